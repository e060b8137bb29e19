"""The medallion's PostgreSQL tables, named where users look for them (as the seed did)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg

from schemas.anomalies import GoldRow
from schemas.rows import BronzeRow, RejectedRow, SilverRow
from schemas.windows import WINDOW_SIZES_S
from sinks.base import RowT
from sinks.postgres import PostgresSink, Table, connect, ensure_schema, retrying

KAFKA_KEY = ("topic", "partition", "offset")
BRONZE = Table("bronze.bronze_performance", BronzeRow, key=KAFKA_KEY)
SILVER = Table("silver.silver_performance", SilverRow, key=("event_id",))
REJECTED = Table("silver.rejected", RejectedRow, key=KAFKA_KEY)
# A replaced gold row is live again: it is final only once it stops changing.
_REOPEN = '"is_final" = false, "updated_at" = clock_timestamp()'
# An aggregate that merged fewer samples than the stored one is older (a worker that
# lost the host's partition writing late, a replay): it never replaces the newer row.
_NOT_OLDER = 'EXCLUDED."sample_count" >= "stored"."sample_count"'
GOLD = {
    name: Table(
        f"gold.perf_{name}_summary",
        GoldRow,
        key=("host_id", "window_start"),
        on_conflict="update",
        also_on_update=_REOPEN,
        replace_when=_NOT_OLDER,
    )
    for name in WINDOW_SIZES_S
}


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


async def silver_sources(
    pool: asyncpg.Pool, event_ids: Sequence[str]
) -> dict[str, tuple[str, int, int]]:
    """The Kafka record each event_id's silver row came from: (topic, partition, offset).

    A record whose coordinates differ from these is a duplicate of that sample.
    Waits out outages.
    """
    ids = list(event_ids)
    rows = await retrying(
        "looking up silver rows",
        lambda: pool.fetch(
            "SELECT event_id, source_topic, source_partition, source_offset "
            "FROM silver.silver_performance WHERE event_id = ANY($1::text[])",
            ids,
        ),
    )
    return {
        r["event_id"]: (r["source_topic"], r["source_partition"], r["source_offset"]) for r in rows
    }


async def finalize_closed_windows(pool: asyncpg.Pool, grace_s: float, settle_s: float) -> int:
    """Mark final the gold rows whose window closed (end + grace) and that did not change
    for ``settle_s``; returns how many rows were marked. Waits out outages."""
    marked = 0
    for table in GOLD.values():
        statement = (
            f"UPDATE {table.name} SET is_final = true WHERE NOT is_final "
            "AND window_end + make_interval(secs => $1) < clock_timestamp() - $2::interval "
            "AND updated_at < clock_timestamp() - $2::interval"
        )
        status = await retrying(
            "marking gold windows final",
            functools.partial(pool.execute, statement, grace_s, timedelta(seconds=settle_s)),
        )
        marked += int(status.rsplit(" ", 1)[-1])
    return marked
