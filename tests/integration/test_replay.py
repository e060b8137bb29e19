"""``hoststream replay`` against real Kafka, PostgreSQL and fake-gcs-server: an hour of
the lake replayed into a fresh topic and database rebuilds bronze, silver and gold as
the originals; replayed again, silver and gold do not change; bad objects stop it."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from app.preflight import ensure_topics
from config import AllSettings
from schemas.lake import LakeObject, OpenObject, archived, hour_number
from sinks.gcs import GcsBucket
from tests.hostile import Forge
from tests.integration.fixtures import (
    Processes,
    eventually,
    read_topic,
    run_command,
    settings_env,
)
from tests.integration.gold_check import Message, drain, produce
from tests.integration.test_lake import known_stream, lake_committed
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration

HOUR = "2026-11-22T10"
START = datetime(2026, 11, 22, 10, 10, tzinfo=UTC)


@pytest.fixture
async def second_database(stack_settings: AllSettings) -> AsyncIterator[str]:
    """Another fresh database on the stack's PostgreSQL: where the replay rebuilds."""
    admin_dsn = stack_settings.postgres_dsn.get_secret_value()
    name = f"test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield admin_dsn.rsplit("/", 1)[0] + f"/{name}"
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def stream_of_one_hour() -> list[Message]:
    """Good samples of 10 hosts from 10:10 to 10:20, and bad records stamped 10:30 by
    Kafka: the lake puts them all in hour 10."""
    good = known_stream([f"host-{n:02d}" for n in range(10)], 20, START)
    forge = Forge(random.Random(19), ["host-00", "host-01"], START)
    stamp_ms = int(START.replace(minute=30).timestamp() * 1000)
    bad = [forge.not_json() for _ in range(10)] + [forge.invalid_utf8() for _ in range(10)]
    rng = random.Random(20)
    stream = list(good)
    for key, value in bad:
        stream.insert(rng.randrange(len(stream) + 1), Message(key, value, "bad", None, stamp_ms))
    return stream


@dataclass(frozen=True)
class Tables:
    """The medallion's rows as a rebuild must give them again: without the topic's name,
    and the times of writing."""

    bronze: set[tuple[Any, ...]]
    silver: set[tuple[Any, ...]]
    rejected: set[tuple[Any, ...]]
    gold: dict[str, set[tuple[Any, ...]]]


async def tables(dsn: str) -> Tables:
    connection = await asyncpg.connect(dsn)
    try:

        async def rows(query: str) -> set[tuple[Any, ...]]:
            return {tuple(r) for r in await connection.fetch(query)}

        silver_columns = await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'silver' "
            "AND table_name = 'silver_performance' "
            "AND column_name NOT IN ('source_topic', 'ingested_at')"
        )
        silver = ", ".join(f'"{r["column_name"]}"' for r in silver_columns)
        gold_columns = "host_id, window_start, window_end, sample_count, cpu_avg_percent, " + (
            "cpu_max_percent, cpu_p95_percent, memory_avg_percent, memory_max_percent, "
            "memory_p95_percent, net_bytes_sent, net_bytes_recv, disk_max_percent, "
            "cpu_anomaly, memory_anomaly, disk_anomaly"
        )
        return Tables(
            bronze=await rows(
                'SELECT "partition", "offset", message_key, payload, kafka_time '
                "FROM bronze.bronze_performance"
            ),
            silver=await rows(f"SELECT {silver} FROM silver.silver_performance"),
            rejected=await rows(
                'SELECT "partition", "offset", message_key, reason, payload FROM silver.rejected'
            ),
            gold={
                name: await rows(f"SELECT {gold_columns} FROM gold.perf_{name}_summary")
                for name in ("5min", "1h")
            },
        )
    finally:
        await connection.close()


async def test_an_hour_replayed_into_a_fresh_database_rebuilds_the_medallion(
    pipeline_settings: AllSettings,
    second_database: str,
    processes: Processes,
    tmp_path: Path,
):
    original = pipeline_settings.model_copy(update={"lake_max_records": 50, "lake_max_age_s": 1.0})
    await ensure_topics(original)
    await produce(original, stream_of_one_hour())
    worker = processes.start(settings_env(original), "worker", name="worker")
    await drain(original, worker, lambda: processes.log("worker"), timeout_s=90)
    await eventually(lambda: lake_committed(original), timeout_s=60, what="the lake")
    processes.stop(worker)
    before = await tables(original.postgres_dsn.get_secret_value())
    assert len(before.silver) == 200
    assert len(before.rejected) == 20

    rebuilt = original.model_copy(
        update={
            "topic": f"{original.topic}_replayed",
            "app_id": f"{original.app_id}-replayed",
            "postgres_dsn": SecretStr(second_database),
            "data_dir": tmp_path / "rebuilding-worker",
            "web_port": free_port(),
            "lake_enabled": False,
        }
    )
    replay = ("replay", "--from", HOUR, "--to-topic", rebuilt.topic)
    done = run_command(settings_env(original), *replay)
    assert done.returncode == 0, done.stderr
    assert "replayed 220 records" in done.stdout, done.stdout
    rebuilder = processes.start(settings_env(rebuilt), "worker", name="rebuilder")
    await drain(rebuilt, rebuilder, lambda: processes.log("rebuilder"), timeout_s=90)
    after = await tables(second_database)
    assert after == before

    again = run_command(settings_env(original), *replay)
    assert again.returncode == 0, again.stderr
    await drain(rebuilt, rebuilder, lambda: processes.log("rebuilder"), timeout_s=90)
    twice = await tables(second_database)
    # Silver keeps each sample's first record and gold counts it once; bronze and
    # silver.rejected, keyed by the Kafka record, keep the replayed records as new ones.
    assert (twice.silver, twice.gold) == (before.silver, before.gold)
    assert len(twice.bronze) == 2 * len(before.bronze)
    assert len(twice.rejected) == 2 * len(before.rejected)
    processes.stop(rebuilder)

    # --rebuild deletes the hour's silver and gold rows; a worker with fresh tables
    # reading a new topic makes them again.
    fresh = rebuilt.model_copy(
        update={
            "topic": f"{original.topic}_rebuilt",
            "app_id": f"{original.app_id}-rebuilt",
            "data_dir": tmp_path / "fresh-worker",
        }
    )
    lake_into_second = original.model_copy(update={"postgres_dsn": SecretStr(second_database)})
    rebuild = run_command(settings_env(lake_into_second), *replay[:-1], fresh.topic, "--rebuild")
    assert rebuild.returncode == 0, rebuild.stderr
    assert "--rebuild: deleted 200 rows of silver.silver_performance" in rebuild.stderr
    fresh_worker = processes.start(settings_env(fresh), "worker", name="fresh")
    await drain(fresh, fresh_worker, lambda: processes.log("fresh"), timeout_s=90)
    rebuilt_again = await tables(second_database)
    assert (rebuilt_again.silver, rebuilt_again.gold) == (before.silver, before.gold)
    connection = await asyncpg.connect(second_database)
    try:
        remade = await connection.fetchval(
            "SELECT count(*) FROM silver.silver_performance WHERE source_topic = $1", fresh.topic
        )
    finally:
        await connection.close()
    assert remade == 200


def lake_object(settings: AllSettings, first: int, lines: list[bytes]) -> LakeObject:
    run = OpenObject(0, hour_number(START), first, 0.0)
    for n, line in enumerate(lines):
        run.add(first + n, line)
    return LakeObject.of(settings.topic, run, gzipped=False)


async def test_a_bad_object_stops_the_replay_unless_it_is_skipped(pipeline_settings: AllSettings):
    settings = pipeline_settings
    await ensure_topics(settings)
    records = [
        r
        for n, m in enumerate(known_stream(["host-00"], 4, START))
        for r in [_Record(settings.topic, n, m.key, m.value)]
    ]
    good = lake_object(settings, 0, [archived(r)[1] for r in records[:2]])
    bad_lines = [archived(records[2])[1], b'{"not": "a record"}\n']
    bad = lake_object(settings, 2, bad_lines)
    bucket = GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host)
    try:
        await bucket.write([good, bad])
    finally:
        await bucket.close()
    target = f"{settings.topic}_replayed"
    env = settings_env(settings)

    stopped = run_command(env, "replay", "--from", HOUR, "--to-topic", target)
    assert stopped.returncode == 1
    assert f"bad object {bad.name} line 2: unknown fields ['not']" in stopped.stderr
    assert "nothing of it was produced (2 records of the objects before it were)" in (
        stopped.stderr
    )
    replayed = await read_topic(settings.model_copy(update={"topic": target}))
    assert [offset for _, offset, _, _ in replayed] == [0, 1]

    skipped = run_command(env, "replay", "--from", HOUR, "--to-topic", target, "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert f"left out 1 bad object(s):\n  {bad.name} line 2" in skipped.stdout


@dataclass
class _Record:
    topic: str
    offset: int
    key: bytes | None
    value: bytes | None
    partition: int = 0
    timestamp: int = 1_795_000_000_000
