"""The PostgreSQL sink on a real server: batched, idempotent, keyed."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import pytest

from sinks.postgres import PostgresSink, Table, connect

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
