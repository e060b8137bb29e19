"""Kafka stopped for 20 s under a worker: the worker stays up, logs the outage in a
few lines rather than one per retry, and once the broker is back every record before
and after the outage arrives exactly once (bronze, silver, gold).

The test stops the session's own broker and always starts it again: the other tests
share it.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from stack import Stack
from tests.integration.fixtures import Processes, eventually, settings_env
from tests.integration.gold_check import (
    bronze_problems,
    drain,
    first_copies,
    gold_problems,
    produce,
    report,
    sample_message,
    silver_problems,
    worker_problems,
    worker_stats,
)

pytestmark = pytest.mark.integration

HOSTS = tuple(f"host-{n:02d}" for n in range(10))
OUTAGE_S = 20.0


def samples(rng: random.Random, count: int) -> list:
    return [
        sample_message(synthetic_document(HOSTS[n % len(HOSTS)], datetime.now(UTC), rng))
        for n in range(count)
    ]


async def test_a_broker_outage_pauses_the_worker_and_loses_nothing(
    pipeline_settings: AllSettings, stack_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings
    await ensure_topics(settings)
    worker = processes.start(settings_env(settings), "worker", name="worker")
    kafka = Stack(stack_settings).service("kafka")
    rng = random.Random(20)
    before, after = samples(rng, 1000), samples(rng, 1000)
    where = await produce(settings, before)

    async def written() -> bool:
        assert worker.poll() is None, processes.log("worker")[-3000:]
        try:
            return (await worker_stats(settings))["acknowledged"] >= len(before)
        except OSError:
            return False  # its web server is not up yet

    await eventually(written, timeout_s=90, what="the worker to write the first records")
    await asyncio.to_thread(kafka.stop)
    stopped = time.monotonic()
    try:
        while time.monotonic() - stopped < OUTAGE_S:
            assert worker.poll() is None, processes.log("worker")[-3000:]
            await asyncio.sleep(1.0)
    finally:
        await asyncio.to_thread(Stack(stack_settings).up, ["kafka"])
    where += await produce(settings, after)
    await drain(settings, worker, lambda: processes.log("worker"), timeout_s=120)

    log = processes.log("worker")
    errors = [line for line in log.splitlines() if "[ERROR]" in line]
    # One line per kind of client error and minute, not one per retry (thousands).
    assert len(errors) < 30, errors
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        problems = worker_problems(worker, log)
        problems += await bronze_problems(database, where)
        problems += await silver_problems(
            database, settings.topic, first_copies(before + after, where)
        )
        problems += await gold_problems(database, settings)
    finally:
        await database.close()
    assert not problems, report(problems)
