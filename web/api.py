"""The lookup API: hosts, a host's newest sample, its gold windows, anomalies.

A per-host lookup is answered by the worker that owns the host's partition of
``gold_hosts``: any other worker passes the request on to it (Faust's
``table_route``, which carries the request's headers, the token included), and
every answer names the worker that served it. The owner answers a host's open
windows from its state in memory and its closed ones from PostgreSQL's gold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import asyncpg
import faust
import orjson

from schemas.anomalies import GoldRow, Thresholds, gold_row
from schemas.api import (
    MAX_SAMPLES,
    SAMPLE_FIGURES,
    SAMPLES_SPAN_S,
    WINDOWS,
    BadRequest,
    LiveWindow,
    is_host_id,
    iso,
    merged_windows,
    since_time,
    time_range,
    window_answer,
    window_name,
)
from schemas.windows import WINDOW_SIZES_S
from sinks.medallion_tables import GOLD, HOSTS, SILVER
from tables.gold import HostStates
from web.openapi import openapi_document

log = logging.getLogger(__name__)

T = TypeVar("T")

QUERY_TIMEOUT_S = 5.0
"""Longest a lookup's query may run."""
LOOKUP_TIMEOUT_S = 6.0
"""A lookup not answered by then gets 503, not a hung request: PostgreSQL stopped (not
gone: a stopped server holds connections open) blocks even taking a connection from
the pool, which the query's own timeout does not cover."""
ROUTE_TIMEOUT_S = 10.0
"""A routed lookup the owning worker has not answered by then (stuck, or paused by a
debugger) gets 503 instead of holding the client for aiohttp's five minutes."""
MAX_ANOMALIES = 10_000
"""Most windows an anomalies lookup answers (the newest)."""

_GOLD_COLUMNS = ", ".join(f'"{f.name}"' for f in dataclasses.fields(GoldRow))


class Unknown(LookupError):
    """No such host: answered 404."""


class Unavailable(RuntimeError):
    """The worker cannot answer now (``str(exc)`` says why): answered 503."""


class Lookups:
    """Reads the answers: ``silver.hosts`` and gold in PostgreSQL, and gold's state."""

    def __init__(self, pool: asyncpg.Pool, states: HostStates, thresholds: Thresholds) -> None:
        self.pool = pool
        self.states = states
        self.thresholds = thresholds

    async def hosts(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT host_id, hostname, first_seen_at, last_sample_time, tags::text "
            f"FROM {HOSTS.name} ORDER BY host_id",
            timeout=QUERY_TIMEOUT_S,
        )
        return [
            {
                "host_id": r["host_id"],
                "hostname": r["hostname"],
                "first_seen_at": iso(r["first_seen_at"]),
                "last_sample_time": iso(r["last_sample_time"]),
                "tags": orjson.loads(r["tags"]),
            }
            for r in rows
        ]

    async def latest(self, host: str) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            f"SELECT *, tags::text AS tags_json FROM {HOSTS.name} WHERE host_id = $1",
            host,
            timeout=QUERY_TIMEOUT_S,
        )
        if row is None:
            raise Unknown(host)
        return {
            "host_id": row["host_id"],
            "hostname": row["hostname"],
            "sample_time": iso(row["last_sample_time"]),
            "tags": orjson.loads(row["tags_json"]),
            **{
                name: row[name]
                for name in (
                    "cpu_percent",
                    "memory_percent",
                    "memory_used_bytes",
                    "memory_total_bytes",
                    "disk_max_percent",
                    "net_bytes_sent_per_s",
                    "net_bytes_recv_per_s",
                )
            },
        }

    async def windows(
        self, host: str, window: str, since: datetime, to: datetime
    ) -> list[dict[str, Any]]:
        """``host``'s windows of size ``window`` (gold's name) that overlap since-to."""
        rows = await self.pool.fetch(
            f"SELECT {_GOLD_COLUMNS} FROM {GOLD[window].name} "
            "WHERE host_id = $1 AND window_start < $3 AND window_end > $2 ORDER BY window_start",
            host,
            since,
            to,
            timeout=QUERY_TIMEOUT_S,
        )
        state = self.states.current(host)
        closed = state.closed_at if state else {}
        if not rows and state is None and not await self._known(host):
            raise Unknown(host)
        size = WINDOW_SIZES_S[window]
        live = [
            LiveWindow(gold_row(host, start, size, agg, self.thresholds), closed=key in closed)
            for key, agg in (state.windows.items() if state else ())
            for name, start in [key]
            if name == window and start < to.timestamp() and start + size > since.timestamp()
        ]
        return merged_windows((GoldRow(**r) for r in rows), live)

    async def anomalies(self, since: datetime) -> list[dict[str, Any]]:
        """Flagged windows of every host that end after ``since``, newest first."""
        union = " UNION ALL ".join(
            f"SELECT '{api}' AS api_window, is_final, {_GOLD_COLUMNS} FROM {GOLD[name].name} "
            "WHERE window_end > $1 AND (cpu_anomaly OR memory_anomaly OR disk_anomaly)"
            for api, name in WINDOWS.items()
        )
        rows = await self.pool.fetch(
            f"{union} ORDER BY window_start DESC, host_id LIMIT {MAX_ANOMALIES}",
            since,
            timeout=QUERY_TIMEOUT_S,
        )
        answers = []
        for r in rows:
            row = GoldRow(**{f.name: r[f.name] for f in dataclasses.fields(GoldRow)})
            answers.append(
                {"host_id": row.host_id, "window": r["api_window"]}
                | window_answer(row, final=r["is_final"])
            )
        return answers

    async def samples(
        self, host: str, since: datetime, to: datetime
    ) -> tuple[list[dict[str, Any]], bool]:
        """``host``'s silver samples taken from ``since`` to ``to`` (both included),
        oldest first, at most :data:`MAX_SAMPLES` (the newest); and whether some were
        left out."""
        columns = ", ".join(f'"{name}"' for name in SAMPLE_FIGURES)
        rows = await self.pool.fetch(
            f"SELECT sample_time, {columns} FROM {SILVER.name} "
            "WHERE host_id = $1 AND sample_time >= $2 AND sample_time <= $3 "
            f"ORDER BY sample_time DESC LIMIT {MAX_SAMPLES + 1}",
            host,
            since,
            to,
            timeout=QUERY_TIMEOUT_S,
        )
        if not rows and not await self._known(host):
            raise Unknown(host)
        answers = [
            {"sample_time": iso(r["sample_time"]), **{name: r[name] for name in SAMPLE_FIGURES}}
            for r in rows[:MAX_SAMPLES]
        ]
        answers.reverse()
        return answers, len(rows) > MAX_SAMPLES

    async def _known(self, host: str) -> bool:
        found = await self.pool.fetchval(
            f"SELECT true FROM {HOSTS.name} WHERE host_id = $1", host, timeout=QUERY_TIMEOUT_S
        )
        return bool(found)


View = Any  # Faust's view, whose json() builds a response
Handler = Callable[..., Awaitable[Any]]


def answering(served_by: str) -> Callable[[Handler], Handler]:
    """Turn a handler returning a dict into a JSON view: the dict with ``served_by``;
    400 for :class:`BadRequest`, 404 for :class:`Unknown`, 503 for :class:`Unavailable`
    or when PostgreSQL fails."""

    def decorate(fun: Handler) -> Handler:
        @functools.wraps(fun)
        async def view(web: View, request: Any, **match: str) -> Any:
            try:
                answer = await within(fun(request, **match), LOOKUP_TIMEOUT_S)
            except BadRequest as exc:
                return web.json({"error": str(exc)}, status=400)
            except Unknown:
                return web.json({"error": "unknown host"}, status=404)
            except Unavailable as exc:
                return web.json({"error": str(exc)}, status=503)
            except TimeoutError:
                log.warning("lookup failed: PostgreSQL did not answer in %g s", LOOKUP_TIMEOUT_S)
                return web.json(
                    {"error": f"PostgreSQL did not answer within {LOOKUP_TIMEOUT_S:g} s"},
                    status=503,
                )
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("lookup failed: PostgreSQL: %r", exc)
                return web.json({"error": f"PostgreSQL did not answer: {exc!r}"}, status=503)
            return web.json({"served_by": served_by, **answer})

        return view

    return decorate


def by_owner(app: faust.App, table: faust.Table, max_id_chars: int) -> Callable[[Handler], Handler]:
    """Route a per-host view to the worker owning the host's partition of ``table``.

    A host id silver could never have accepted (too long, control characters, invalid
    UTF-8 in the path) is unknown here, before routing: it could not even be hashed
    to a partition. An owner that does not answer gets 503.
    """

    def decorate(fun: Handler) -> Handler:
        routed = app.table_route(table=table, match_info="host")(fun)

        @functools.wraps(fun)
        async def view(web: View, request: Any, **match: str) -> Any:
            if not is_host_id(match["host"], max_id_chars):
                return web.json({"error": "unknown host"}, status=404)
            try:
                return await within(routed(web, request, **match), ROUTE_TIMEOUT_S)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return web.json(
                    {"error": f"the worker that owns this host did not answer: {exc!r}"},
                    status=503,
                )

        return view

    return decorate


def add_api(
    app: faust.App,
    lookups: Lookups,
    *,
    not_ready: Callable[[], str | None],
    max_range_s: float,
    max_id_chars: int,
) -> None:
    """Serve the API's routes (``/api/...``) on ``app``'s web server; ``not_ready``
    says why gold's state cannot be read now (None when it can)."""
    served_by = str(app.conf.canonical_url)
    answer = answering(served_by)
    owner = by_owner(app, lookups.states.table, max_id_chars)
    document = openapi_document(served_by)

    @app.page("/api/openapi.json")
    async def openapi(web: View, request: Any) -> Any:
        return web.json(document)

    @app.page("/api/hosts")
    @answer
    async def list_hosts(request: Any) -> dict[str, Any]:
        return {"hosts": await lookups.hosts()}

    @app.page("/api/hosts/{host}/latest")
    @owner
    @answer
    async def latest(request: Any, host: str) -> dict[str, Any]:
        return await lookups.latest(host)

    @app.page("/api/hosts/{host}/windows/{window}")
    @owner
    @answer
    async def windows(request: Any, host: str, window: str) -> dict[str, Any]:
        name = window_name(window)
        # Taking partitions over, the state is still being read from the changelog:
        # its open windows would be missing, and their stored rows taken for closed.
        why = not_ready()
        if why is not None:
            raise Unavailable(f"this worker cannot answer yet: {why}; ask again")
        query = request.query
        since, to = time_range(query.get("from"), query.get("to"), _now(), max_range_s)
        return {
            "host_id": host,
            "window": window,
            "from": iso(since),
            "to": iso(to),
            "windows": await lookups.windows(host, name, since, to),
        }

    # Not routed to the owner: silver is in PostgreSQL, which any worker reads as well,
    # so a hop would only add latency, and the answer would wait out a rebalance.
    @app.page("/api/hosts/{host}/samples")
    @answer
    async def samples(request: Any, host: str) -> dict[str, Any]:
        if not is_host_id(host, max_id_chars):
            raise Unknown(host)
        query = request.query
        since, to = time_range(
            query.get("from"), query.get("to"), _now(), max_range_s, SAMPLES_SPAN_S
        )
        rows, truncated = await lookups.samples(host, since, to)
        return {
            "host_id": host,
            "from": iso(since),
            "to": iso(to),
            "truncated": truncated,
            "samples": rows,
        }

    @app.page("/api/anomalies")
    @answer
    async def anomalies(request: Any) -> dict[str, Any]:
        since = since_time(request.query.get("since"), _now(), max_range_s)
        return {"since": iso(since), "anomalies": await lookups.anomalies(since)}


async def within(work: Awaitable[T], timeout_s: float) -> T:
    """``work``'s result, or TimeoutError after ``timeout_s``, then at once.

    Unlike ``asyncio.wait_for``, it does not wait for the cancelled work to wind down:
    asyncpg cancels a query by asking the server, which a stopped server never answers.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        # Its end, whenever it comes, is nobody's to read: no "never retrieved" warning.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise TimeoutError
    return task.result()


def _now() -> datetime:
    return datetime.now(UTC)
