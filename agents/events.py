"""Helpers shared by the agents for reading Faust events."""

from __future__ import annotations

from typing import Any

from schemas.rows import KafkaOrigin


def kafka_origin(event: Any) -> KafkaOrigin:
    """Where a Faust event was read, with the message's timestamp in epoch milliseconds."""
    message = event.message
    return KafkaOrigin(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        timestamp_ms=round(message.timestamp * 1000),
    )
