"""Event hours as the warehouse takes them: aware UTC datetimes at the start of an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas import lake

HOUR = timedelta(hours=1)


def parse_hour(text: str) -> datetime:
    """``2026-11-22T13`` (UTC; any ISO 8601 time within the hour also does) as the
    hour's start, aware UTC; raises ``ValueError`` naming the expected form."""
    return lake.hour_start(lake.parse_hour(text))


def checked_hour(hour: datetime) -> datetime:
    """``hour`` itself when it is aware and on the hour; raises ``ValueError`` otherwise,
    since a half hour would delete and load the wrong rows."""
    if hour.tzinfo is None:
        raise ValueError(f"hour {hour.isoformat()} has no time zone")
    if hour.minute or hour.second or hour.microsecond:
        raise ValueError(f"{hour.isoformat()} is not the start of an hour")
    return hour.astimezone(UTC)


def hours_to_reload(hour: datetime, reload_hours: int) -> list[datetime]:
    """The ``reload_hours`` hours ending with ``hour``, oldest first: a run for ``hour``
    also reloads the hours before it, which late samples may have reached since."""
    if reload_hours < 1:
        raise ValueError(f"reload_hours must be at least 1, not {reload_hours}")
    last = checked_hour(hour)
    return [last - n * HOUR for n in range(reload_hours - 1, -1, -1)]


def hour_range(start: datetime, end: datetime) -> list[datetime]:
    """Every hour from ``start`` to ``end``, both included, oldest first; raises
    ``ValueError`` when ``end`` is before ``start``."""
    first, last = checked_hour(start), checked_hour(end)
    if last < first:
        raise ValueError(f"{last:%Y-%m-%dT%H} is before {first:%Y-%m-%dT%H}")
    return [first + n * HOUR for n in range((last - first) // HOUR + 1)]


def hour_label(hour: datetime) -> str:
    """``2026-11-22T13``: how hours are written in commands and summaries."""
    return f"{hour:%Y-%m-%dT%H}"
