import time

import asyncpg
import pytest

from sinks.base import REASON_MAX_CHARS, RefusedRow, RowsRefused, bounded_reason
from sinks.coalescing import CoalescingSink
from sinks.gcs import GcsBucket, GcsUnreachable
from sinks.memory import ListSink
from sinks.postgres import (
    Waiting,
    is_row_error,
    is_transient,
    redacted_dsn,
    retrying,
    waiting_for_postgres,
)
from stack.throwaway import free_ports


async def test_list_sink_keeps_the_first_row_of_each_key_once_flushed():
    sink: ListSink[tuple[str, int]] = ListSink(key=lambda row: row[0])
    await sink.write([("a", 1), ("b", 1)])
    assert sink.rows == []
    await sink.flush()
    await sink.write([("a", 2), ("c", 1)])
    await sink.close()
    assert sink.rows == [("a", 1), ("b", 1), ("c", 1)]


async def test_a_closed_sink_refuses_writes():
    async with ListSink(key=lambda row: row) as sink:
        await sink.write([1])
    assert sink.rows == [1]
    with pytest.raises(RuntimeError, match="closed"):
        await sink.write([2])


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://app:s3cret@db.example:5432/metrics",
            "postgresql://app@db.example:5432/metrics",
        ),
        (
            "postgres://app:p/a?s#s@db/metrics?sslmode=require",
            "postgres://app@db/metrics?sslmode=require",
        ),
        (
            "postgresql://app@db/metrics?password=s3cret&sslmode=require",
            "postgresql://app@db/metrics?sslmode=require",
        ),
        (
            "postgresql://db/metrics?sslmode=require&PASSWORD=s3cret",
            "postgresql://db/metrics?sslmode=require",
        ),
        (
            "postgresql://app:s3cret@h1:5432,h2:5433/metrics",
            "postgresql://app@h1:5432,h2:5433/metrics",
        ),
        (
            "postgresql://app:s3cret@/metrics?host=/var/run/postgresql",
            "postgresql://app@/metrics?host=/var/run/postgresql",
        ),
        ("postgresql:///metrics?host=/tmp&password=s3cret", "postgresql:///metrics?host=/tmp"),
        (
            "postgresql://hoststream@127.0.0.1:15432/hoststream",
            "postgresql://hoststream@127.0.0.1:15432/hoststream",
        ),
        ("host=db user=app password=s3cret dbname=metrics", "host=db user=app dbname=metrics"),
        ("host=db password='s3 cret' dbname=metrics", "host=db dbname=metrics"),
    ],
)
def test_a_dsn_is_shown_without_its_password(dsn: str, shown: str):
    assert redacted_dsn(dsn) == shown
    assert "s3" not in redacted_dsn(dsn)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        TimeoutError(),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another process"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    ],
)
def test_an_outage_is_waited_out(error: Exception):
    assert is_transient(error)
    assert not is_row_error(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
        asyncpg.ProgramLimitExceededError("index row requires 10016 bytes, maximum size is 8191"),
        asyncpg.NumericValueOutOfRangeError("bigint out of range"),
        asyncpg.InvalidTextRepresentationError('invalid input syntax for type integer: "x"'),
        asyncpg.NotNullViolationError('null value in column "host_id"'),
        asyncpg.exceptions._base.DataError(
            "invalid input for query argument $1 (out of int64 range)"
        ),
        OverflowError("value out of int32 range"),
        UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"),
    ],
)
def test_a_row_postgresql_refuses_is_refused_for_good(error: Exception):
    assert is_row_error(error)
    assert not is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("pool is closed"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.UndefinedTableError('relation "gold.nope" does not exist'),
        asyncpg.PostgresSyntaxError('syntax error at or near "SELEC"'),
        asyncpg.InvalidPasswordError('password authentication failed for user "app"'),
        RuntimeError("a bug"),
    ],
)
def test_a_bug_is_neither_waited_out_nor_blamed_on_a_row(error: Exception):
    assert not is_transient(error)
    assert not is_row_error(error)


def test_a_reason_is_one_bounded_line():
    assert (
        bounded_reason("index row\nrequires\t10016\x00 bytes") == "index row requires 10016 bytes"
    )
    long = bounded_reason("x" * 10_000)
    assert len(long) == REASON_MAX_CHARS
    assert long.endswith("...")


def test_rows_refused_names_the_sink_and_every_row():
    refused = RowsRefused("silver.silver_performance", [RefusedRow(3, "a"), RefusedRow(7, "b")])
    assert [r.index for r in refused.refused] == [3, 7]
    assert str(refused) == "silver.silver_performance refused 2 row(s); the first, at 3: a"


async def test_an_outage_is_retried_logged_twice_and_shown_while_it_lasts(caplog):
    failures = [ConnectionRefusedError(111, "Connect call failed"), asyncpg.CannotConnectNowError()]
    seen: list[object] = []

    async def attempt() -> str:
        seen.append(waiting_for_postgres())
        if failures:
            raise failures.pop(0)
        return "written"

    assert await retrying("write to t", attempt) == "written"
    assert seen[0] is None
    waiting = seen[1]
    assert isinstance(waiting, Waiting)
    assert seen[2] is waiting
    assert waiting.what == "write to t"
    assert waiting.error.startswith("ConnectionRefusedError")
    assert waiting.as_json()["service"] == "PostgreSQL"
    assert waiting_for_postgres() is None
    lines = [r.getMessage() for r in caplog.records if r.name == "sinks.postgres"]
    assert len(lines) == 2
    assert lines[0].startswith("PostgreSQL is unreachable (ConnectionRefusedError")
    assert lines[1].startswith("PostgreSQL is reachable again after 0.")


async def test_an_error_no_wait_fixes_is_raised_at_once():
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        raise asyncpg.UndefinedTableError('relation "t" does not exist')

    with pytest.raises(asyncpg.UndefinedTableError):
        await retrying("write to t", attempt)
    assert attempts == 1
    assert waiting_for_postgres() is None


async def test_a_coalescing_sink_keeps_the_item_replaces_prefers():
    inner = ListSink(key=lambda row: row)
    newest = CoalescingSink(
        inner, key=lambda item: item[0], build=lambda item: item, replaces=lambda n, h: n[1] >= h[1]
    )
    # A host's sample of 12:00 arriving after its 12:05 one, in a later batch.
    await newest.write([("a", 5), ("b", 1)])
    await newest.write([("a", 0), ("b", 2)])
    await newest.flush()
    assert sorted(inner.rows) == [("a", 5), ("b", 2)]


async def test_a_bucket_with_patience_gives_up_on_a_gcs_that_does_not_answer():
    # A port nothing listens on: every call is refused, as while GCS is away.
    bucket = GcsBucket("lake", f"http://127.0.0.1:{free_ports(1)[0]}", patience_s=1.0)
    started = time.monotonic()
    with pytest.raises(GcsUnreachable, match=r"GCS did not answer for \d+ s .* during reading x"):
        await bucket.read("x")
    assert 1.0 <= time.monotonic() - started < 10
    await bucket.close()
