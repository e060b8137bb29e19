"""Kafka topics the worker reads and writes."""

from __future__ import annotations

from app.core import app, settings

# Values stay bytes: bronze keeps them exactly as received, silver decodes and checks them.
metrics_topic = app.topic(
    settings.topic,
    key_type=bytes,
    value_type=bytes,
    partitions=settings.topic_partitions,
)
