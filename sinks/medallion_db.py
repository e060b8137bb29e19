"""The medallion database as a worker uses it: one pool, a sink per table, two queries.

The worker opens it once at start (which ensures the schema) and hands each stage
the sinks and queries it uses; every call waits out PostgreSQL outages.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from sinks.base import RowT
from sinks.medallion_tables import GOLD
from sinks.postgres import PostgresSink, Table, connect, ensure_schema, retrying

POOL_MAX_CONNECTIONS = 8
"""Bronze, silver and gold each write a batch at once, and silver looks up another."""


class MedallionDb:
    """A connection pool on the medallion database, schema ensured."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, *, wait: bool = True) -> MedallionDb:
        """Connect and ensure the schema; ``wait=False``: raise ``DatabaseUnreachable``
        at once when PostgreSQL does not answer (see :func:`sinks.postgres.connect`)."""
        pool = await connect(dsn, max_size=POOL_MAX_CONNECTIONS, wait=wait)
        try:
            await ensure_schema(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    def sink(self, table: Table[RowT]) -> PostgresSink[RowT]:
        return PostgresSink(self.pool, table)

    async def silver_sources(self, event_ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """The Kafka record each event_id's silver row came from: (topic, partition, offset).

        A record whose coordinates differ from these is a duplicate of that sample.
        """
        ids = list(event_ids)
        rows = await retrying(
            "looking up silver rows",
            lambda: self.pool.fetch(
                "SELECT event_id, source_topic, source_partition, source_offset "
                "FROM silver.silver_performance WHERE event_id = ANY($1::text[])",
                ids,
            ),
        )
        return {
            r["event_id"]: (r["source_topic"], r["source_partition"], r["source_offset"])
            for r in rows
        }

    async def finalize_closed_windows(self, grace_s: float, settle_s: float) -> int:
        """Mark final the gold rows whose window closed (end + grace) and that did not
        change for ``settle_s``; returns how many rows were marked."""
        marked = 0
        for table in GOLD.values():
            statement = (
                f"UPDATE {table.name} SET is_final = true WHERE NOT is_final "
                "AND window_end + make_interval(secs => $1) < clock_timestamp() - $2::interval "
                "AND updated_at < clock_timestamp() - $2::interval"
            )
            status = await retrying(
                "marking gold windows final",
                functools.partial(
                    self.pool.execute, statement, grace_s, timedelta(seconds=settle_s)
                ),
            )
            marked += int(status.rsplit(" ", 1)[-1])
        return marked

    async def close(self) -> None:
        await self.pool.close()
