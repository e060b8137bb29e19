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

# In-memory hand-over between the agents: one item per batch, so Faust's
# per-event cost is paid once (by bronze, the only Kafka consumer), not three times.
silver_batches = app.channel()
gold_batches = app.channel()
