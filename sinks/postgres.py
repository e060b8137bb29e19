"""PostgreSQL sinks: batched, idempotent writes with asyncpg, that wait out outages.

A batch is COPYed into a per-connection temporary staging table, then moved
into the real table with ``INSERT ... ON CONFLICT`` on the table's key, in one
transaction. COPY is the fast path for many rows; the conflict clause is what
makes a replayed batch change nothing.

Every use of PostgreSQL goes through :func:`retrying`: an error a wait can fix
(the server away or restarting, a lost connection) is retried with backoff,
and the process-wide :func:`waiting_for_postgres` says since when it waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from operator import attrgetter
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import unquote

import asyncpg
import asyncpg.exceptions._base as asyncpg_base

from sinks.base import RefusedRow, RowsRefused, RowT, Sink, bounded_reason

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors after which the same call may succeed later: the server stopping,
# restarting or full of connections, the network dropping, a pooled connection
# that died with the server.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

# Errors caused by what a row holds: a NUL or a bad byte in text, a value out of
# its column's range, a key too long to index, a missing value. asyncpg's encoder
# refuses some before they are sent: as DataError for a query's arguments, as the
# codec's own OverflowError or UnicodeEncodeError (a lone surrogate) in a COPY.
# The same row fails the same way forever.
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg_base.DataError,
    asyncpg.ProgramLimitExceededError,
    asyncpg.IntegrityConstraintViolationError,
    OverflowError,
    UnicodeEncodeError,
)

_FIRST_BACKOFF_S = 0.2
_MAX_BACKOFF_S = 5.0
_SCHEMA_LOCK_ID = 0x686F737473  # "hosts": any constant shared by every worker


class DatabaseUnreachable(RuntimeError):
    """PostgreSQL did not answer at start; the message names the address and the cause."""


def is_transient(exc: BaseException) -> bool:
    """Whether waiting may fix ``exc``: PostgreSQL away, restarting or out of connections."""
    if isinstance(exc, _TRANSIENT_ERRORS):
        return True
    # asyncpg says a connection closed under it with a bare InterfaceError; its other
    # InterfaceErrors (a closed pool, bad arguments, an operation in progress) are bugs.
    return type(exc) is asyncpg.InterfaceError and "connection is closed" in str(exc)


def is_row_error(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL (or asyncpg) refusing what a row holds."""
    return isinstance(exc, _ROW_ERRORS)


@dataclass(frozen=True)
class Waiting:
    """This process cannot reach PostgreSQL: since when, doing what, and why."""

    what: str
    """What failed first, e.g. ``write to silver.silver_performance``."""
    error: str
    since: datetime
    """Wall clock (UTC) of the first failure."""
    since_monotonic: float

    def as_json(self) -> dict[str, Any]:
        """What ``/stats/`` shows."""
        return {
            "service": "PostgreSQL",
            "what": self.what,
            "error": self.error,
            "since": self.since.isoformat(),
            "waited_s": round(time.monotonic() - self.since_monotonic, 1),
        }


_waiting: Waiting | None = None
"""The process-wide outage: set by the first failure, cleared by the next success."""


def waiting_for_postgres() -> Waiting | None:
    """The outage this process is waiting out, or None while PostgreSQL answers."""
    return _waiting


async def retrying(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Await ``attempt()`` until it does not fail for a reason waiting can fix.

    Such failures are retried with backoff (0.2 s doubling up to 5 s), forever:
    Kafka keeps the records meanwhile. The first failure of an outage logs one
    line and sets :func:`waiting_for_postgres`; the first success after it, from
    any caller, logs one line with how long it lasted and clears it. Any other
    error propagates at once. ``attempt`` must be safe to repeat.
    """
    global _waiting
    backoff_s = _FIRST_BACKOFF_S
    while True:
        try:
            result = await attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if _waiting is None:
                error = bounded_reason(f"{type(exc).__name__}: {exc}")
                _waiting = Waiting(what, error, datetime.now(UTC), time.monotonic())
                log.warning(
                    "PostgreSQL is unreachable (%s during %s); waiting for it, retrying",
                    error,
                    what,
                )
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
            continue
        if _waiting is not None:
            log.warning(
                "PostgreSQL is reachable again after %.1f s (since %s, first during %s)",
                time.monotonic() - _waiting.since_monotonic,
                _waiting.since.isoformat(timespec="seconds"),
                _waiting.what,
            )
            _waiting = None
        return result


@dataclass(frozen=True)
class Table(Generic[RowT]):
    """A PostgreSQL table whose columns are the fields of the dataclass ``row_type``."""

    name: str
    """Qualified name, ``schema.table``."""
    row_type: type[RowT]
    key: tuple[str, ...]
    on_conflict: Literal["keep", "update"] = "keep"
    """``keep``: the first row of a key stays (raw and validated data never change).
    ``update``: the newest row replaces it (aggregates that grow while a window is open).
    Within one write, the first row of a key is the one kept, the last the one that
    replaces."""
    also_on_update: str = ""
    """Extra ``SET`` assignments for columns outside ``row_type`` when a row is replaced."""
    replace_when: str = ""
    """``update`` only: an SQL condition a new row must meet to replace the stored one,
    on ``EXCLUDED`` (the new row) and ``stored`` (the row in the table). Empty: always."""

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.row_type))  # type: ignore[arg-type]


async def connect(
    dsn: str, *, timeout_s: float = 10.0, max_size: int = 4, wait: bool = True
) -> asyncpg.Pool:
    """Open a connection pool.

    ``wait``: while PostgreSQL is unreachable for a reason waiting can fix, retry
    (see :func:`retrying`); a worker's agents do. ``wait=False``: raise
    :class:`DatabaseUnreachable` at once; start-up checks do. Other failures (a
    wrong password, a missing database) raise :class:`DatabaseUnreachable` either
    way, with one line naming the DSN without its password.
    """

    async def open_pool() -> asyncpg.Pool:
        # No connection floor (min_size 0): asyncpg would keep one by reconnecting in the
        # background, logging a traceback per attempt all through an outage. One query
        # instead, so that a server that does not answer fails here.
        pool = await asyncio.wait_for(
            asyncpg.create_pool(dsn, min_size=0, max_size=max_size, timeout=timeout_s),
            timeout=timeout_s,
        )
        assert pool is not None
        try:
            await pool.execute("SELECT 1", timeout=timeout_s)
        except BaseException:
            pool.terminate()
            raise
        return pool

    try:
        return await (retrying("connecting", open_pool) if wait else open_pool())
    except (*_TRANSIENT_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnreachable(
            f"PostgreSQL at {redacted_dsn(dsn)} is unreachable: {exc or type(exc).__name__}"
        ) from None


async def ensure_schema(pool: asyncpg.Pool) -> None:
    """Create the medallion's schemas, tables and indexes when they are missing."""
    ddl = resources.files("sinks").joinpath("postgres_schema.sql").read_text()

    async def apply() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK_ID)
            await conn.execute(ddl)

    await retrying("creating the schema", apply)


class PostgresSink(Sink[RowT], Generic[RowT]):
    """Writes each batch to one table at once; :meth:`flush` has nothing left to do.

    A write that fails because PostgreSQL is away is retried until it succeeds
    (:func:`retrying`): the agent waits, Kafka holds the records, nothing is
    dropped. A batch PostgreSQL refuses for what some rows hold is written without
    them, found by halving; :meth:`write` then raises :class:`RowsRefused`.
    """

    def __init__(self, pool: asyncpg.Pool, table: Table[RowT]):
        self.pool = pool
        self.table = table
        self.rows_written = 0
        """Rows that were new to the table, or replaced a row (a replayed row does not count)."""
        columns = table.columns
        quoted = ", ".join(f'"{c}"' for c in columns)
        key = ", ".join(f'"{c}"' for c in table.key)
        self._what = f"write to {table.name}"
        self._stage = "stage_" + table.name.replace(".", "_")
        self._values = attrgetter(*columns)
        self._columns = list(columns)
        if table.on_conflict == "update":
            updates = [f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in table.key]
            if table.also_on_update:
                updates.append(table.also_on_update)
            conflict = f"DO UPDATE SET {', '.join(updates)}"
            if table.replace_when:
                conflict += f" WHERE {table.replace_when}"
            # The newest row of a key in the batch replaces; the first one is kept.
            order = "DESC"
        else:
            conflict = "DO NOTHING"
            order = "ASC"
        # The ordinal numbers the rows in COPY order: a tie-break for DISTINCT ON.
        self._create_stage = (
            f'CREATE TEMP TABLE IF NOT EXISTS "{self._stage}" '
            f'(LIKE {table.name} INCLUDING DEFAULTS, "hoststream_ordinal" bigserial) '
            "ON COMMIT DELETE ROWS"
        )
        # DISTINCT ON: a batch may hold the same key twice (a sample sent twice in
        # a row), and ON CONFLICT DO UPDATE refuses to touch one row twice.
        self._merge = (
            f'INSERT INTO {table.name} AS "stored" ({quoted}) '
            f'SELECT DISTINCT ON ({key}) {quoted} FROM "{self._stage}" '
            f'ORDER BY {key}, "hoststream_ordinal" {order} '
            f"ON CONFLICT ({key}) {conflict}"
        )

    async def write(self, rows: Sequence[RowT]) -> None:
        if not rows:
            return
        refused: list[RefusedRow] = []
        await self._write_isolating([self._values(row) for row in rows], 0, refused)
        if refused:
            raise RowsRefused(self.table.name, refused)

    async def _write_isolating(
        self, records: list[Any], first_index: int, refused: list[RefusedRow]
    ) -> None:
        """Write ``records``; when PostgreSQL refuses some for what they hold, write the
        halves apart until each refused row is alone, and add it to ``refused``."""
        try:
            self.rows_written += await retrying(self._what, lambda: self._write_once(records))
        except Exception as exc:
            if not is_row_error(exc):
                raise
            if len(records) == 1:
                reason = bounded_reason(f"{type(exc).__name__}: {exc}")
                refused.append(RefusedRow(first_index, reason))
                return
            half = len(records) // 2
            await self._write_isolating(records[:half], first_index, refused)
            await self._write_isolating(records[half:], first_index + half, refused)

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


_KEYWORD_PASSWORD = re.compile(r"""\s*\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S*)""", re.IGNORECASE)


def redacted_dsn(dsn: str) -> str:
    """``dsn`` without its password, to print or log.

    Leaves out the password of the credentials (``user:secret@host`` gives
    ``user@host``), any ``password`` query parameter, and in a key/value DSN
    (``host=... password=...``) the ``password`` keyword; the rest is kept as given.
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return _KEYWORD_PASSWORD.sub("", dsn).strip()
    # The credentials end at the last "@": a password may hold "/", "?" or "#" unescaped,
    # and an "@" elsewhere only makes more of the DSN hidden, never less.
    credentials, at, rest = rest.rpartition("@")
    user = credentials.partition(":")[0]
    rest, hash_sep, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    kept = [p for p in query.split("&") if p and unquote(p.partition("=")[0]).lower() != "password"]
    query = "&".join(kept)
    return f"{scheme}://{user}{at}{rest}{'?' if query else ''}{query}{hash_sep}{fragment}"
