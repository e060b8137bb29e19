"""PostgreSQL sinks: batched, idempotent writes with asyncpg.

A batch is COPYed into a per-connection temporary staging table, then moved
into the real table with ``INSERT ... ON CONFLICT`` on the table's key, in one
transaction. COPY is the fast path for many rows; the conflict clause is what
makes a replayed batch change nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from operator import attrgetter
from typing import Any, Generic, Literal

import asyncpg

from sinks.base import RowT, Sink

log = logging.getLogger(__name__)

# Errors after which the same write may succeed later: the server restarting,
# the network dropping, a connection the pool handed out going stale.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)

_SCHEMA_LOCK_ID = 0x686F737473  # "hosts": any constant shared by every worker


class DatabaseUnreachable(RuntimeError):
    """PostgreSQL did not answer at start; the message names the address and the cause."""


@dataclass(frozen=True)
class Table(Generic[RowT]):
    """A PostgreSQL table whose columns are the fields of the dataclass ``row_type``."""

    name: str
    """Qualified name, ``schema.table``."""
    row_type: type[RowT]
    key: tuple[str, ...]
    on_conflict: Literal["keep", "update"] = "keep"
    """``keep``: the first row of a key stays (raw and validated data never change).
    ``update``: the newest row replaces it (aggregates that grow while a window is open)."""
    also_on_update: str = ""
    """Extra ``SET`` assignments for columns outside ``row_type`` when a row is replaced."""

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.row_type))  # type: ignore[arg-type]


async def connect(dsn: str, *, timeout_s: float = 10.0, max_size: int = 4) -> asyncpg.Pool:
    """Open a connection pool, raising :class:`DatabaseUnreachable` with one clear line."""
    try:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(dsn, min_size=1, max_size=max_size, timeout=timeout_s),
            timeout=timeout_s,
        )
    except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as exc:
        raise DatabaseUnreachable(
            f"PostgreSQL at {_address(dsn)} is unreachable: {exc or type(exc).__name__}"
        ) from None
    assert pool is not None
    return pool


async def ensure_schema(pool: asyncpg.Pool) -> None:
    """Create the medallion's schemas, tables and indexes when they are missing."""
    ddl = resources.files("sinks").joinpath("postgres_schema.sql").read_text()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK_ID)
        await conn.execute(ddl)


class PostgresSink(Sink[RowT], Generic[RowT]):
    """Writes each batch to one table at once; :meth:`flush` has nothing left to do.

    A write that fails because PostgreSQL is away is retried with backoff until
    it succeeds: the agent waits, Kafka holds the records, nothing is dropped.
    """

    def __init__(self, pool: asyncpg.Pool, table: Table[RowT], *, max_backoff_s: float = 10.0):
        self.pool = pool
        self.table = table
        self.max_backoff_s = max_backoff_s
        self.rows_written = 0
        """Rows that were new to the table (a replayed row does not count)."""
        columns = table.columns
        quoted = ", ".join(f'"{c}"' for c in columns)
        key = ", ".join(f'"{c}"' for c in table.key)
        self._stage = "stage_" + table.name.replace(".", "_")
        self._values = attrgetter(*columns)
        self._columns = list(columns)
        if table.on_conflict == "update":
            updates = [f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in table.key]
            if table.also_on_update:
                updates.append(table.also_on_update)
            conflict = f"DO UPDATE SET {', '.join(updates)}"
        else:
            conflict = "DO NOTHING"
        self._create_stage = (
            f'CREATE TEMP TABLE IF NOT EXISTS "{self._stage}" '
            f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        # DISTINCT ON: a batch may hold the same key twice (a sample sent twice in
        # a row), and ON CONFLICT DO UPDATE refuses to touch one row twice.
        self._merge = (
            f"INSERT INTO {table.name} ({quoted}) "
            f'SELECT DISTINCT ON ({key}) {quoted} FROM "{self._stage}" ORDER BY {key} '
            f"ON CONFLICT ({key}) {conflict}"
        )

    async def write(self, rows: Sequence[RowT]) -> None:
        if not rows:
            return
        records = [self._values(row) for row in rows]
        backoff_s = 0.2
        failing_since: float | None = None
        while True:
            try:
                inserted = await self._write_once(records)
            except TRANSIENT_ERRORS as exc:
                if failing_since is None:
                    failing_since = asyncio.get_running_loop().time()
                    log.warning(
                        "PostgreSQL write to %s failed (%s); retrying until it succeeds",
                        self.table.name,
                        exc or type(exc).__name__,
                    )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
                continue
            if failing_since is not None:
                waited = asyncio.get_running_loop().time() - failing_since
                log.warning("PostgreSQL writes to %s resumed after %.1f s", self.table.name, waited)
            self.rows_written += inserted
            return

    async def _write_once(self, records: list[Any]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(self._create_stage)
            await conn.copy_records_to_table(self._stage, records=records, columns=self._columns)
            status = await conn.execute(self._merge)
        return int(status.rsplit(" ", 1)[-1])

    async def flush(self) -> None:
        """Nothing is buffered: :meth:`write` returns once the rows are committed."""

    async def close(self) -> None:
        """The pool belongs to whoever opened it; closing a sink leaves it open."""


def _address(dsn: str) -> str:
    # Never echo the password: keep only what follows the credentials.
    return dsn.rsplit("@", 1)[-1]
