"""End to end on real Kafka and PostgreSQL: collectors -> machine_metrics -> worker ->
bronze and silver. What a user checks: every record produced is in bronze exactly
once with its offset, every valid sample is in silver with its values, a malformed
record is logged and counted without stopping the worker, and a replay changes nothing."""

from __future__ import annotations

import urllib.request

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from app.preflight import ensure_topics
from config import AllSettings
from tests.integration.fixtures import (
    Processes,
    committed_up_to_end,
    eventually,
    read_topic,
    run_command,
    settings_env,
)

pytestmark = pytest.mark.integration

SAMPLES_PER_HOST = 5


async def produce_raw(settings: AllSettings, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic, value, key=key)
    finally:
        await producer.stop()


def stats(settings: AllSettings) -> dict:
    url = f"http://{settings.web_host}:{settings.web_port}/stats/"
    with urllib.request.urlopen(url, timeout=5) as response:
        return orjson.loads(response.read())


async def test_collected_samples_arrive_in_bronze_and_silver_exactly_once(
    pipeline_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings
    env = settings_env(settings)
    await ensure_topics(settings)

    # Collectors run before any worker exists: the worker must still see their samples.
    for host in ("host-a", "host-b"):
        done = run_command(
            {**env, "HOSTSTREAM_HOST_ID": host}, "collect", "--count", str(SAMPLES_PER_HOST)
        )
        assert done.returncode == 0, done.stderr
    await produce_raw(settings, b"host-a", b'{"schema_version": 1, "cpu": "oops"')

    worker = processes.start(env, "worker", name="worker")
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        produced = await read_topic(settings)
        assert len(produced) == 2 * SAMPLES_PER_HOST + 1

        async def bronze_complete() -> bool:
            try:
                count = await database.fetchval("SELECT count(*) FROM bronze.bronze_performance")
                silver = await database.fetchval("SELECT count(*) FROM silver.silver_performance")
            except asyncpg.UndefinedTableError:
                return False
            return count == len(produced) and silver == 2 * SAMPLES_PER_HOST

        await eventually(bronze_complete, what="bronze and silver to hold every record")

        bronze = await database.fetch(
            'SELECT "partition", "offset", message_key, payload, topic '
            "FROM bronze.bronze_performance ORDER BY 1, 2"
        )
        assert [(r["partition"], r["offset"]) for r in bronze] == [
            (p, o) for p, o, _, _ in produced
        ]
        assert [r["payload"].encode() for r in bronze] == [v for _, _, _, v in produced]
        assert [r["message_key"].encode() for r in bronze] == [k for _, _, k, _ in produced]
        assert {r["topic"] for r in bronze} == {settings.topic}

        valid = {}
        for partition, offset, key, value in produced:
            if value.startswith(b'{"schema_version":1,"event_id"'):
                document = orjson.loads(value)
                assert key == document["host_id"].encode()
                valid[document["event_id"]] = (partition, offset, document)
        silver = await database.fetch("SELECT * FROM silver.silver_performance")
        assert {r["event_id"] for r in silver} == set(valid)
        hosts = [r["host_id"] for r in silver]
        assert sorted(hosts) == ["host-a"] * SAMPLES_PER_HOST + ["host-b"] * SAMPLES_PER_HOST
        for row in silver:
            partition, offset, document = valid[row["event_id"]]
            assert (row["source_partition"], row["source_offset"]) == (partition, offset)
            assert row["cpu_percent"] == document["cpu"]["percent"]
            assert row["cpu_fraction"] == pytest.approx(document["cpu"]["percent"] / 100)
            assert row["memory_used_bytes"] == document["memory"]["used_bytes"]
            assert row["net_bytes_recv"] == document["network"]["bytes_recv"]
            assert row["sample_time"].isoformat().replace("+00:00", "Z") == document["timestamp"]

        # The malformed record is counted and logged with where it is; the worker lives on.
        assert worker.poll() is None
        counted = stats(settings)
        assert counted["rejected"] == 1
        assert counted["bronze_rows"] == len(produced)
        assert counted["silver_rows"] == 2 * SAMPLES_PER_HOST
        assert "not JSON" in counted["last_rejection"]
        bad_partition, bad_offset = next(
            (p, o) for p, o, _, v in produced if v.startswith(b'{"schema_version": 1, "cpu"')
        )
        assert f"rejected record {settings.topic}[{bad_partition}]@{bad_offset}" in processes.log(
            "worker"
        )

        # Offsets are committed once the rows are written; a clean stop exits 0.
        await eventually(lambda: committed_up_to_end(settings), what="offsets to be committed")
        assert processes.stop(worker) == 0

        # A new consumer group replays the whole topic into the same tables: nothing doubles.
        replay = settings.model_copy(update={"app_id": settings.app_id + "-replay"})
        processes.start(settings_env(replay), "worker", name="replay")
        await eventually(lambda: committed_up_to_end(replay), what="the replay to finish")
        assert await database.fetchval("SELECT count(*) FROM bronze.bronze_performance") == len(
            produced
        )
        assert (
            await database.fetchval("SELECT count(*) FROM silver.silver_performance")
            == 2 * SAMPLES_PER_HOST
        )
        assert stats(replay)["bronze_rows"] == 0
    finally:
        await database.close()
