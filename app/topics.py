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

dead_letters = app.topic(
    f"{settings.topic}.dlq",
    key_type=bytes,
    value_type=bytes,
    partitions=settings.topic_partitions,
)
"""Records silver refused, as received, with the reason and origin in headers."""

# In-memory hand-over between the agents, one item per batch: the consumer hands
# each fetch of the metrics topic to bronze (app/consumer.py), bronze to silver,
# silver to gold, so Faust's per-event cost is paid once per batch.
raw_batches = app.channel()
silver_batches = app.channel()
gold_batches = app.channel()
