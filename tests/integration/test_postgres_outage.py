"""PostgreSQL stopped for 30 s under a steady stream: the worker stays up, says at
``/stats/`` that it waits, and once the database is back every record arrives
exactly once (bronze, silver, gold) and the whole topic is committed.

The test stops the session's own PostgreSQL (``pg_ctl stop -m fast``, as an
administrator would) and always starts it again: the other tests share it.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from stack import Stack
from tests.integration.fixtures import Processes, eventually, settings_env
from tests.integration.gold_check import (
    Coordinates,
    Message,
    bronze_problems,
    drain,
    first_copies,
    gold_problems,
    report,
    sample_message,
    silver_problems,
    worker_problems,
    worker_stats,
)

pytestmark = pytest.mark.integration

HOSTS = tuple(f"host-{n:02d}" for n in range(20))
RECORDS_PER_S = 50
TICK_S = 0.1
OUTAGE_S = 30.0


class SteadyStream:
    """Samples of HOSTS, keyed by host, at RECORDS_PER_S, until :meth:`stop`."""

    def __init__(self, settings: AllSettings) -> None:
        self.settings = settings
        self.messages: list[Message] = []
        self._sent: list[asyncio.Future[Any]] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[list[Coordinates]] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[Coordinates]:
        """Stop producing (again: nothing more); where each message landed, in order."""
        self._stopping.set()
        assert self._task is not None
        return await self._task

    async def _run(self) -> list[Coordinates]:
        rng = random.Random(14)
        interval_s = len(HOSTS) / RECORDS_PER_S
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            due = time.monotonic()
            while not self._stopping.is_set():
                for _ in range(round(RECORDS_PER_S * TICK_S)):
                    host = HOSTS[len(self.messages) % len(HOSTS)]
                    document = synthetic_document(host, datetime.now(UTC), rng, interval_s)
                    message = sample_message(document)
                    self.messages.append(message)
                    self._sent.append(
                        await producer.send(self.settings.topic, message.value, key=message.key)
                    )
                due += TICK_S
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            landed = await asyncio.gather(*self._sent)
        finally:
            await producer.stop()
        return [(meta.partition, meta.offset) for meta in landed]


async def test_a_postgres_outage_pauses_the_worker_and_loses_nothing(
    pipeline_settings: AllSettings, stack_settings: AllSettings, processes: Processes
):
    # The finaliser runs every 2 s, so it meets the outage too (it used to kill the worker).
    settings = pipeline_settings.model_copy(update={"gold_finalize_interval_s": 2.0})
    await ensure_topics(settings)
    worker = processes.start(settings_env(settings), "worker", name="worker")
    stack = Stack(stack_settings)
    postgres = stack.service("postgres")
    stream = SteadyStream(settings)
    stream.start()
    timings: dict[str, float] = {}
    started = time.monotonic()

    def mark(what: str) -> None:
        timings[what] = time.monotonic() - started

    waiting_seen: list[dict[str, object]] = []
    try:

        async def writing() -> bool:
            if worker.poll() is not None:
                return True
            try:
                return (await worker_stats(settings))["gold_rows"] > 0
            except aiohttp.ClientConnectionError:
                return False  # its web server is not up yet

        await eventually(writing, timeout_s=90, what="the worker to write gold rows")
        assert worker.poll() is None, processes.log("worker")[-3000:]

        mark("outage starts")
        await asyncio.to_thread(postgres.stop)
        mark("PostgreSQL stopped")
        while time.monotonic() - started - timings["outage starts"] < OUTAGE_S:
            assert worker.poll() is None, processes.log("worker")[-3000:]
            waiting = (await worker_stats(settings))["waiting_for"]
            if waiting is not None:
                if not waiting_seen:
                    mark("/stats/ shows the worker waiting")
                waiting_seen.append(waiting)
            await asyncio.sleep(1.0)

        mark("restart begins")
        await asyncio.to_thread(stack.up, ["postgres"])
        mark("PostgreSQL accepts connections")
        back = time.monotonic()

        async def resumed() -> bool:
            return (await worker_stats(settings))["waiting_for"] is None

        backlog = len(stream.messages)
        await eventually(resumed, timeout_s=60, what="/stats/ to stop showing the wait")
        mark("/stats/ shows the worker resumed")

        async def caught_up() -> bool:
            return (await worker_stats(settings))["acknowledged"] >= backlog

        await eventually(caught_up, timeout_s=120, what="the worker to write the backlog")
        mark(f"backlog written ({backlog} records produced by the restart)")
        # The stream goes on a little after the outage, as it would.
        await asyncio.sleep(max(0.0, back + 5.0 - time.monotonic()))
        where = await stream.stop()
        mark(f"stream stopped ({len(where)} records)")
        await drain(settings, worker, lambda: processes.log("worker"), timeout_s=180)
        mark("whole topic committed")
    finally:
        if postgres.pid() is None:
            await asyncio.to_thread(stack.up, ["postgres"])
        await stream.stop()
        print("\n".join(f"{t:7.1f} s  {what}" for what, t in timings.items()))

    assert waiting_seen, "/stats/ never showed the worker waiting for PostgreSQL"
    assert waiting_seen[0]["service"] == "PostgreSQL"
    log = processes.log("worker")
    outage_lines = [line for line in log.splitlines() if "PostgreSQL is unreachable" in line]
    back_lines = [line for line in log.splitlines() if "PostgreSQL is reachable again" in line]
    assert len(outage_lines) == 1, outage_lines
    assert len(back_lines) == 1, back_lines
    assert "Traceback" not in log
    print(outage_lines[0], back_lines[0], sep="\n")

    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        problems = worker_problems(worker, log)
        problems += await bronze_problems(database, where)
        problems += await silver_problems(
            database, settings.topic, first_copies(stream.messages, where)
        )
        problems += await gold_problems(database, settings)
    finally:
        await database.close()
    assert not problems, report(problems)
    stats = await worker_stats(settings)
    assert stats["waiting_for"] is None
    assert stats["rejected"] == 0
    assert stats["late_samples"] == 0
