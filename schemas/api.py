"""The API's answers and the rules on its parameters (pure functions).

Times are ISO 8601 in UTC with a ``Z``; every figure names its unit. A parameter a
user got wrong raises :class:`BadRequest` with one line saying what and why.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.anomalies import GoldRow

WINDOWS = {"5m": "5min", "1h": "1h"}
"""The API's window names -> gold's (``schemas.windows.WINDOW_SIZES_S``)."""

DEFAULT_SPAN_S = 86_400.0
"""A windows lookup without ``from`` covers this long before ``to``; an anomalies
lookup without ``since`` this long before now."""
SAMPLES_SPAN_S = 3_600.0
"""A samples lookup without ``from`` covers this long before ``to``: the last hour a
dashboard draws."""

SAMPLE_FIGURES = {
    "cpu_percent": "percent",
    "memory_percent": "percent",
    "memory_used_bytes": "bytes",
    "memory_total_bytes": "bytes",
    "disk_max_percent": "percent",
    "disk_used_bytes": "bytes",
    "disk_total_bytes": "bytes",
    "net_bytes_sent_per_s": "rate",
    "net_bytes_recv_per_s": "rate",
}
"""The columns of ``silver.silver_performance`` a samples lookup answers, by kind."""
MAX_SAMPLES = 20_000
"""Most samples a samples lookup answers (the newest): 5.5 hours at one a second."""


class BadRequest(ValueError):
    """A parameter the API cannot take: answered 400 with the message."""


def iso(moment: datetime) -> str:
    """``moment`` (aware) as ISO 8601 in UTC with a ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(name: str, text: str) -> datetime:
    """An ISO 8601 timestamp with a time zone (``2026-11-29T10:00:00Z``), as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{name}: {_shown(text)} is not an ISO 8601 timestamp (2026-11-29T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name}: {_shown(text)} has no time zone (end it with Z for UTC)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadRequest(f"{name}: {_shown(text)} is outside the calendar in UTC") from None


def _shown(text: str) -> str:
    # A parameter quoted in an error message: at most a short line, whatever was sent.
    quoted = repr(text)
    return quoted if len(quoted) <= 60 else quoted[:56] + "...'"


def window_name(window: str) -> str:
    """Gold's name of the API's ``window`` (``5m`` or ``1h``)."""
    try:
        return WINDOWS[window]
    except KeyError:
        raise BadRequest(
            f"unknown window {_shown(window)}: use one of {', '.join(WINDOWS)}"
        ) from None


def time_range(
    start: str | None,
    end: str | None,
    now: datetime,
    max_range_s: float,
    default_span_s: float = DEFAULT_SPAN_S,
) -> tuple[datetime, datetime]:
    """The ``from`` and ``to`` of a windows or samples lookup: ``to`` defaults to now,
    ``from`` to ``default_span_s`` (or ``max_range_s`` if shorter) before ``to``."""
    to = parse_time("to", end) if end is not None else now
    if start is not None:
        since = parse_time("from", start)
    else:
        try:
            since = to - timedelta(seconds=min(default_span_s, max_range_s))
        except OverflowError:
            raise BadRequest(f"to ({iso(to)}) leaves no room for a default from") from None
    if since > to:
        raise BadRequest(f"from ({iso(since)}) is after to ({iso(to)})")
    if (to - since).total_seconds() > max_range_s:
        raise BadRequest(
            f"from-to covers {(to - since).total_seconds():.0f} s, "
            f"more than the {max_range_s:.0f} s a lookup may ask for"
        )
    return since, to


def since_time(since: str | None, now: datetime, max_range_s: float) -> datetime:
    """The ``since`` of an anomalies lookup: at most ``max_range_s`` before now."""
    if since is None:
        return now - timedelta(seconds=min(DEFAULT_SPAN_S, max_range_s))
    moment = parse_time("since", since)
    if (now - moment).total_seconds() > max_range_s:
        raise BadRequest(
            f"since ({iso(moment)}) is more than the {max_range_s:.0f} s a lookup may "
            "ask for before now"
        )
    return moment


def is_host_id(host: str, max_chars: int) -> bool:
    """Whether ``host`` could be a host id silver accepted: not empty, at most
    ``max_chars``, no control characters, and encodable (no lone surrogates, which a
    path's invalid percent-escapes become). Any other is unknown without a lookup."""
    if not host or len(host) > max_chars:
        return False
    try:
        host.encode()
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(c) == "Cc" for c in host)


@dataclass(frozen=True, slots=True)
class LiveWindow:
    """A window as its host's state on the owning worker holds it."""

    row: GoldRow
    closed: bool
    """Its end plus the grace passed: no sample can change it any more."""


def window_answer(row: GoldRow, final: bool) -> dict[str, Any]:
    """One window as the API answers it; ``final``: no sample can change it any more."""
    return {
        "window_start": iso(row.window_start),
        "window_end": iso(row.window_end),
        "sample_count": row.sample_count,
        "cpu_avg_percent": row.cpu_avg_percent,
        "cpu_max_percent": row.cpu_max_percent,
        "cpu_p95_percent": row.cpu_p95_percent,
        "memory_avg_percent": row.memory_avg_percent,
        "memory_max_percent": row.memory_max_percent,
        "memory_p95_percent": row.memory_p95_percent,
        "net_bytes_sent": row.net_bytes_sent,
        "net_bytes_recv": row.net_bytes_recv,
        "disk_max_percent": row.disk_max_percent,
        "cpu_anomaly": row.cpu_anomaly,
        "memory_anomaly": row.memory_anomaly,
        "disk_anomaly": row.disk_anomaly,
        "final": final,
    }


def merged_windows(stored: Iterable[GoldRow], live: Iterable[LiveWindow]) -> list[dict[str, Any]]:
    """One answer per window, by start: the live state's where it has the window (it is
    ahead of PostgreSQL's gold rows by up to a checkpoint), else the stored row. A row
    the state no longer holds was closed and flushed before it left (or its host
    expired): it is final even before the finaliser marks it so."""
    chosen: dict[datetime, dict[str, Any]] = {
        row.window_start: window_answer(row, final=True) for row in stored
    }
    for w in live:
        chosen[w.row.window_start] = window_answer(w.row, final=w.closed)
    return [chosen[start] for start in sorted(chosen)]
