"""The collector loop: sample on the interval grid, publish, repeat."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.errors import KafkaError

from collector.publisher import Publisher
from collector.sampler import Sampler
from collector.schedule import next_tick

log = logging.getLogger(__name__)


async def collect(sampler: Sampler, publisher: Publisher, count: int | None = None) -> int:
    """Publish a sample every ``sampler.interval_s`` seconds; ``count`` stops after that many.

    Returns the number of samples the broker acknowledged.
    """
    sent = 0
    taken = 0
    failing = False
    while count is None or taken < count:
        await asyncio.sleep(max(0.0, next_tick(time.time(), sampler.interval_s) - time.time()))
        sample = sampler.sample()
        taken += 1
        try:
            await publisher.send(sample)
        except KafkaError as exc:
            # One line when the broker goes away and one when it returns, not one per sample.
            if not failing:
                log.error("Kafka stopped acknowledging samples (%s); sample dropped", exc)
            failing = True
            continue
        if failing:
            log.warning("Kafka acknowledges samples again")
            failing = False
        sent += 1
    return sent
