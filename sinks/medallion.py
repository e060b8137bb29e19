"""The medallion's PostgreSQL tables, named where users look for them (as the seed did)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from schemas.rows import BronzeRow, SilverRow
from sinks.base import RowT
from sinks.postgres import PostgresSink, Table, connect, ensure_schema

BRONZE = Table("bronze.bronze_performance", BronzeRow, key=("topic", "partition", "offset"))
SILVER = Table("silver.silver_performance", SilverRow, key=("event_id",))


@asynccontextmanager
async def postgres_sink(dsn: str, table: Table[RowT]) -> AsyncIterator[PostgresSink[RowT]]:
    """A sink on ``table`` with a pool of its own, schema ensured, closed on exit."""
    pool = await connect(dsn)
    try:
        await ensure_schema(pool)
        async with PostgresSink(pool, table) as sink:
            yield sink
    finally:
        await pool.close()
