"""The PostgreSQL sink on a real server: batched, idempotent, keyed."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest

from schemas.anomalies import Thresholds, gold_row
from schemas.rows import BronzeRow
from schemas.windows import WindowAggregate
from sinks.base import RowsRefused
from sinks.medallion_tables import BRONZE, GOLD
from sinks.postgres import PostgresSink, Table, connect, ensure_schema

pytestmark = pytest.mark.integration


@dataclass(frozen=True, slots=True)
class Reading:
    host_id: str
    window_start: int
    value: float


KEEP = Table("public.readings", Reading, key=("host_id", "window_start"))
UPSERT = Table("public.readings", Reading, key=("host_id", "window_start"), on_conflict="update")


@pytest.fixture
async def pool(database: str):
    pool = await connect(database)
    await pool.execute(
        "CREATE TABLE readings (host_id text, window_start int, value float8, "
        "PRIMARY KEY (host_id, window_start))"
    )
    yield pool
    await pool.close()


async def table(pool: asyncpg.Pool) -> list[tuple]:
    return [tuple(r) for r in await pool.fetch("SELECT * FROM readings ORDER BY 1, 2")]


async def test_a_replayed_batch_changes_nothing(pool):
    sink = PostgresSink(pool, KEEP)
    batch = [Reading("a", 0, 1.0), Reading("b", 0, 2.0), Reading("a", 0, 9.0)]
    await sink.write(batch)
    await sink.write(batch)
    await sink.flush()
    assert await table(pool) == [("a", 0, 1.0), ("b", 0, 2.0)]
    assert sink.rows_written == 2


async def test_update_mode_keeps_the_newest_row_of_each_key(pool):
    sink = PostgresSink(pool, UPSERT)
    await sink.write([Reading("a", 0, 1.0), Reading("a", 300, 5.0)])
    await sink.write([Reading("a", 0, 3.0)])
    assert await table(pool) == [("a", 0, 3.0), ("a", 300, 5.0)]


async def test_a_large_batch_goes_through_copy(pool):
    sink = PostgresSink(pool, KEEP)
    await sink.write([Reading(f"h{i % 100}", i, float(i)) for i in range(20_000)])
    assert await pool.fetchval("SELECT count(*) FROM readings") == 20_000


@dataclass(frozen=True, slots=True)
class Note:
    host_id: str
    window_start: int
    note: str


NOTES = Table("public.notes", Note, key=("host_id", "window_start"))


async def test_rows_postgresql_refuses_are_named_and_the_others_written(pool):
    await pool.execute(
        "CREATE TABLE notes (host_id text, window_start int, note text, "
        "PRIMARY KEY (host_id, window_start))"
    )
    # Random letters: a repeated one would be compressed below the index's limit.
    huge_key = "".join(random.Random(1).choices(string.ascii_letters, k=10_000))
    rows = [Note(f"h{i}", i, "fine") for i in range(40)]
    rows[7] = Note("h7", 7, "a NUL \x00 in text")
    rows[23] = Note(huge_key, 23, "fine")
    rows[31] = Note("h31", 2**40, "beyond integer")
    rows[36] = Note("h36", 36, "a lone surrogate \udc80")
    sink = PostgresSink(pool, NOTES)
    with pytest.raises(RowsRefused) as refused:
        await sink.write(rows)
    reasons = {r.index: r.reason for r in refused.value.refused}
    assert sorted(reasons) == [7, 23, 31, 36]
    assert "0x00" in reasons[7]
    assert "index row requires" in reasons[23]
    assert "int32" in reasons[31]
    assert "surrogate" in reasons[36]
    assert all(len(reason) <= 500 and "\n" not in reason for reason in reasons.values())
    assert refused.value.sink == "public.notes"
    stored = await pool.fetch("SELECT host_id FROM notes ORDER BY window_start")
    assert [r["host_id"] for r in stored] == [
        row.host_id for i, row in enumerate(rows) if i not in reasons
    ]
    assert sink.rows_written == len(rows) - 4


async def test_an_error_that_is_no_row_s_fault_is_raised(pool):
    sink = PostgresSink(pool, Table("public.missing", Reading, key=("host_id",)))
    with pytest.raises(asyncpg.UndefinedTableError):
        await sink.write([Reading("a", 0, 1.0)])


async def test_within_a_batch_the_first_copy_is_kept_and_the_last_replaces(pool):
    await PostgresSink(pool, KEEP).write([Reading("a", 0, v) for v in range(1, 100)])
    assert await table(pool) == [("a", 0, 1.0)]
    await PostgresSink(pool, UPSERT).write([Reading("b", 0, v) for v in range(1, 100)])
    assert await table(pool) == [("a", 0, 1.0), ("b", 0, 99.0)]


async def test_a_gold_row_is_never_replaced_by_one_that_merged_fewer_samples(database: str):
    pool = await connect(database)
    try:
        await ensure_schema(pool)
        sink = PostgresSink(pool, GOLD["5min"])
        start = int(datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp())

        async def write(count: int) -> int:
            await sink.write(
                [gold_row("a", start, 300, WindowAggregate(count=count), Thresholds())]
            )
            return int(await pool.fetchval("SELECT sample_count FROM gold.perf_5min_summary"))

        assert await write(5) == 5
        await pool.execute("UPDATE gold.perf_5min_summary SET is_final = true")
        assert await write(3) == 5
        assert await pool.fetchval("SELECT is_final FROM gold.perf_5min_summary")
        assert await write(5) == 5
        assert await write(8) == 8
        assert not await pool.fetchval("SELECT is_final FROM gold.perf_5min_summary")
    finally:
        await pool.close()


async def test_bronze_keeps_a_record_without_a_kafka_timestamp(database: str):
    pool = await connect(database)
    try:
        await ensure_schema(pool)
        now = datetime.now(UTC)
        await PostgresSink(pool, BRONZE).write(
            [BronzeRow("t", 0, 0, None, "{}", None, now), BronzeRow("t", 0, 1, "k", "x", now, now)]
        )
        stored = await pool.fetch(
            'SELECT kafka_time FROM bronze.bronze_performance ORDER BY "offset"'
        )
        assert [r["kafka_time"] for r in stored] == [None, now]
    finally:
        await pool.close()
