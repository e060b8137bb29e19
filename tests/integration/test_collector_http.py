"""The collector sending through a worker's HTTP ingest instead of Kafka: while the
worker is away its samples wait in the spool; once it is back every sample reaches
silver exactly once, in order."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import orjson
import pytest
from pydantic import SecretStr

from app.preflight import ensure_topics
from config import AllSettings
from tests.integration.fixtures import (
    Processes,
    eventually,
    read_topic,
    run_command,
    settings_env,
)
from tests.integration.test_ingest import wait_until_ready

pytestmark = pytest.mark.integration

HOST = "http-collector"
COUNT = 60  # 12 s at 0.2 s
TOKEN = "ingest-secret"


async def test_samples_wait_while_the_ingest_is_away_then_reach_silver_once_in_order(
    pipeline_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings.model_copy(
        update={"ingest_token": SecretStr(TOKEN), "host_id": HOST}
    )
    await ensure_topics(settings)
    worker_env = settings_env(settings)
    worker = processes.start(worker_env, "worker", name="worker")
    async with aiohttp.ClientSession() as session:
        await wait_until_ready(settings, session)

    ingest = f"http://{settings.web_host}:{settings.web_port}/api/ingest"
    collector_env = {
        **worker_env,
        "HOSTSTREAM_COLLECTOR_TRANSPORT": "http",
        "HOSTSTREAM_COLLECTOR_INGEST_URL": ingest,
        "HOSTSTREAM_COLLECTOR_INGEST_TOKEN": TOKEN,
        # Kafka is not the collector's way: an unreachable broker must not matter.
        "HOSTSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9",
    }
    collector = processes.start(collector_env, "collect", "--count", str(COUNT), name="collector")
    await asyncio.sleep(2)
    assert processes.stop(worker) == 0
    await eventually(
        lambda: asyncio.sleep(0, "stopped acknowledging" in processes.log("collector")),
        timeout_s=30,
        what="the collector to notice the ingest is away",
    )
    await asyncio.sleep(3)
    processes.start(worker_env, "worker", name="worker-again")
    code = await asyncio.to_thread(collector.wait, 120)
    log = processes.log("collector")
    assert code == 0, log
    assert log.count("stopped acknowledging samples") == 1, log
    assert log.count("acknowledges samples again") == 1, log
    assert f"HTTP ingest at {ingest}" in log

    # In Kafka at least once each (an answer lost with the worker may be resent) ...
    produced = [orjson.loads(value) for *_, value in await read_topic(settings)]
    assert {d["host_id"] for d in produced} == {HOST}
    times = [d["timestamp"] for d in produced]
    assert len(set(times)) == COUNT
    assert times == sorted(times)

    # ... and in silver exactly once, in the order they were taken.
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:

        async def silver() -> list[asyncpg.Record] | None:
            try:
                rows = await database.fetch(
                    "SELECT event_id, sample_time, source_offset FROM silver.silver_performance "
                    "WHERE host_id = $1 ORDER BY source_offset",
                    HOST,
                )
            except asyncpg.UndefinedTableError:
                return None
            return rows if len(rows) >= COUNT else None

        rows = await eventually(silver, timeout_s=60, what="silver to hold every sample")
        assert len(rows) == COUNT
        assert len({r["event_id"] for r in rows}) == COUNT
        assert [r["sample_time"] for r in rows] == sorted(r["sample_time"] for r in rows)
    finally:
        await database.close()


def test_the_http_transport_without_its_url_and_token_is_a_setting_error(
    stack_settings: AllSettings,
):
    done = run_command(
        {**settings_env(stack_settings), "HOSTSTREAM_COLLECTOR_TRANSPORT": "http"},
        "collect",
        "--count",
        "1",
    )
    assert done.returncode == 2
    assert "HOSTSTREAM_COLLECTOR_INGEST_URL and HOSTSTREAM_COLLECTOR_INGEST_TOKEN" in done.stderr
