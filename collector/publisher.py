"""Sends samples to Kafka: JSON values (orjson), keyed by host id."""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.metrics import MetricsSample

log = logging.getLogger(__name__)


class BrokerUnreachable(RuntimeError):
    """Kafka did not answer at start; the message names the servers and the cause."""


class Publisher:
    """An idempotent aiokafka producer: acks from all in-sync replicas, lz4 batches."""

    def __init__(self, bootstrap_servers: list[str], topic: str) -> None:
        self.topic = topic
        self._servers = bootstrap_servers
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=5,
        )

    async def start(self, timeout_s: float = 15.0) -> None:
        """Connect, or raise :class:`BrokerUnreachable` within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._producer.start(), timeout=timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._producer.stop()
            servers = ",".join(self._servers)
            raise BrokerUnreachable(
                f"Kafka at {servers} is unreachable: {exc or type(exc).__name__}"
            ) from None

    async def send(self, sample: MetricsSample) -> None:
        """Send one sample and wait for the broker's acknowledgement."""
        await self._producer.send_and_wait(
            self.topic, orjson.dumps(sample), key=sample.host_id.encode()
        )

    async def stop(self) -> None:
        await self._producer.stop()
