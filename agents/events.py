"""Helpers shared by the agents for reading Kafka records."""

from __future__ import annotations

from typing import Any

from schemas.rows import KafkaOrigin


def kafka_origin(message: Any) -> KafkaOrigin:
    """Where a Faust message was read, with its timestamp in epoch milliseconds."""
    return KafkaOrigin(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        timestamp_ms=round(message.timestamp * 1000),
    )
