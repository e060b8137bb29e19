"""Alerts from gold's anomaly flags: when a host's metric enters anomaly and when it
resolves (pure functions; agents/alerts.py applies them, agents/notify.py posts them).

Only 5-minute windows count, and only once closed: an open window's row changes with
every batch, a closed one never again. Per host and metric the state is whether the
metric is in anomaly, since which window, and whether a fresh window announced it
(:attr:`schemas.windows.HostState.alerting`). A window is *fresh* when it ended at
most ``quiet_after_s`` before the wall clock: a backlog or a replay of old data moves
the state but its events are marked ``stale`` and posted nowhere, and an anomaly still
open when the worker catches up is announced by the first fresh window that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import orjson

from schemas.anomalies import GoldRow, Thresholds, gold_row
from schemas.windows import WINDOW_SIZES_S, HostState

ALERT_SCHEMA_VERSION = 1
ALERT_WINDOW = "5min"
"""The gold window alerts are decided on."""
Metric = Literal["cpu", "memory", "disk"]
METRICS: tuple[Metric, ...] = ("cpu", "memory", "disk")
Kind = Literal["firing", "resolved"]

FIRING: Kind = "firing"
RESOLVED: Kind = "resolved"

_MEASURES = {
    "cpu": ("CPU p95", "cpu_p95_percent"),
    "memory": ("memory max", "memory_max_percent"),
    "disk": ("fullest disk", "disk_max_percent"),
}
"""Metric -> (its words in a message, the threshold's and the row's field)."""

Alerting = dict[str, tuple[int, bool]]
"""Metric in anomaly -> (start of the window where it began, epoch s; announced)."""


@dataclass
class AlertStats:
    """The alerts' figures since the worker started, served at ``/metrics``."""

    raised: dict[tuple[Kind, bool], int] = field(default_factory=dict)
    """(kind, stale) -> events the alerts stage put on the topic."""
    messages_posted: int = 0
    """Slack messages the webhook took."""
    events_posted: int = 0
    """Events in those messages."""

    def count_raised(self, events: list[AlertEvent]) -> None:
        for event in events:
            key = (event.kind, event.stale)
            self.raised[key] = self.raised.get(key, 0) + 1


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One change of a host's metric, as the topic ``<topic>.alerts`` carries it."""

    event_id: str
    """``host|metric|kind|window_start`` (epoch s): the same change derived again after a
    crash gets the same id, and the notifier posts it once."""
    host_id: str
    metric: Metric
    kind: Kind
    window_start: datetime
    """The 5-minute window that decided (UTC)."""
    window_end: datetime
    since: datetime
    """Start of the window where the anomaly began."""
    value_percent: float
    """The deciding window's CPU p95, memory maximum or fullest disk, percent."""
    threshold_percent: float
    stale: bool
    """The window ended more than quiet_after_s before it was judged (a backlog or a
    replay): on the topic, never posted."""
    schema_version: int = ALERT_SCHEMA_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "schema_version": self.schema_version,
                "event_id": self.event_id,
                "host_id": self.host_id,
                "metric": self.metric,
                "kind": self.kind,
                "window_start": self.window_start,
                "window_end": self.window_end,
                "since": self.since,
                "value_percent": self.value_percent,
                "threshold_percent": self.threshold_percent,
                "stale": self.stale,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> AlertEvent:
        """Inverse of :meth:`encode`; raises ``ValueError`` for anything else."""
        try:
            data: Any = orjson.loads(raw)
            if not isinstance(data, dict):
                raise ValueError(f"not an alert event: a JSON {type(data).__name__}")
            if data.get("schema_version") != ALERT_SCHEMA_VERSION:
                raise ValueError(f"unknown schema_version {data.get('schema_version')!r}")
            if data["metric"] not in METRICS or data["kind"] not in (FIRING, RESOLVED):
                raise ValueError(f"unknown metric or kind: {data['metric']!r}, {data['kind']!r}")
            return cls(
                event_id=str(data["event_id"]),
                host_id=str(data["host_id"]),
                metric=data["metric"],
                kind=data["kind"],
                window_start=datetime.fromisoformat(data["window_start"]),
                window_end=datetime.fromisoformat(data["window_end"]),
                since=datetime.fromisoformat(data["since"]),
                value_percent=float(data["value_percent"]),
                threshold_percent=float(data["threshold_percent"]),
                stale=bool(data["stale"]),
            )
        except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"not an alert event: {exc!r}") from None


def alert_transitions(
    alerting: Alerting, row: GoldRow, thresholds: Thresholds, now_s: float, quiet_after_s: float
) -> list[AlertEvent]:
    """The events of one closed 5-minute window of ``row.host_id``, in place on its
    ``alerting`` state: a metric entering anomaly fires, one leaving it resolves, an
    anomaly first seen stale is announced by its first fresh window; nothing else."""
    fresh = row.window_end.timestamp() >= now_s - quiet_after_s
    start_s = int(row.window_start.timestamp())
    flags = {"cpu": row.cpu_anomaly, "memory": row.memory_anomaly, "disk": row.disk_anomaly}
    events = []
    for metric in METRICS:
        held = alerting.get(metric)
        if flags[metric]:
            if held is None:
                alerting[metric] = (start_s, fresh)
                events.append(_event(row, metric, FIRING, start_s, thresholds, stale=not fresh))
            elif fresh and not held[1]:
                alerting[metric] = (held[0], True)
                events.append(_event(row, metric, FIRING, held[0], thresholds, stale=False))
        elif held is not None:
            del alerting[metric]
            events.append(_event(row, metric, RESOLVED, held[0], thresholds, stale=not held[1]))
    return events


@dataclass(frozen=True, slots=True)
class Judged:
    """What judging a host's newly closed windows gives: the events, and the state to
    keep once they are on the topic."""

    events: list[AlertEvent]
    alerting: Alerting
    judged_s: int
    """Start of the newest window judged."""


def judge_closed(
    state: HostState, host_id: str, thresholds: Thresholds, now_s: float, quiet_after_s: float
) -> Judged | None:
    """Judge, in window order, the closed 5-minute windows of ``state`` not judged yet
    (None when there are none). ``state`` is left as it is: the caller stores the result
    once the events are delivered, so a crash before that derives them again.

    Closed windows stay in the state until their closing batch is committed, and the
    state records the newest window judged: a window closed in a batch that a crash
    replays is judged on the replay even if the state was stored after it closed.
    """
    size_s = WINDOW_SIZES_S[ALERT_WINDOW]
    closed = sorted(
        start
        for name, start in state.closed_at
        if name == ALERT_WINDOW and start > state.alerts_judged_s
    )
    if not closed:
        return None
    alerting = dict(state.alerting)
    events = []
    for start in closed:
        row = gold_row(host_id, start, size_s, state.windows[(ALERT_WINDOW, start)], thresholds)
        events += alert_transitions(alerting, row, thresholds, now_s, quiet_after_s)
    return Judged(events, alerting, closed[-1])


def _event(
    row: GoldRow, metric: Metric, kind: Kind, since_s: int, thresholds: Thresholds, stale: bool
) -> AlertEvent:
    field = _MEASURES[metric][1]
    start_s = int(row.window_start.timestamp())
    return AlertEvent(
        event_id=f"{row.host_id}|{metric}|{kind}|{start_s}",
        host_id=row.host_id,
        metric=metric,
        kind=kind,
        window_start=row.window_start,
        window_end=row.window_end,
        since=datetime.fromtimestamp(since_s, tz=UTC),
        value_percent=getattr(row, field),
        threshold_percent=getattr(thresholds, field),
        stale=stale,
    )


SLACK_SECTION_MAX_CHARS = 3000
"""Slack refuses a section block whose text is longer."""


def slack_message(host_id: str, events: list[AlertEvent], dashboard_url: str) -> dict[str, Any]:
    """One Slack incoming-webhook message for some of a host's events (those that came
    within its rate limit, oldest first): a line per event, and a link to the host's
    page of the dashboard when ``dashboard_url`` is set."""
    lines = [event_line(e) for e in events]
    host = _escape(host_id)
    title = f"*{host}*: {len(events)} alert change{'s' if len(events) > 1 else ''}"
    if dashboard_url:
        # Percent-escaped, as the dashboard reads #host=; no < > | left to end the link.
        title += f" (<{dashboard_url.rstrip('/')}/#host={quote(host_id, safe='')}|dashboard>)"
    shown: list[str] = []
    for n, line in enumerate(lines):
        # Room kept for the last line, saying how many did not fit.
        if sum(len(s) + 1 for s in shown) + len(line) > SLACK_SECTION_MAX_CHARS - 40:
            shown.append(f"... and {len(lines) - n} more")
            break
        shown.append(line)
    body = "\n".join(shown)
    return {
        # The text is mrkdwn too: an id like <!channel> must not ping anyone.
        "text": f"{host}: " + "; ".join(shown),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": title}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        ],
    }


def event_line(event: AlertEvent) -> str:
    """One event in words, e.g. ``FIRING cpu: CPU p95 97.0 % > 90.0 % in 10:05-10:10 UTC,
    since 10:00 UTC (2026-11-30)``."""
    words = _MEASURES[event.metric][0]
    when = f"{event.window_start:%H:%M}-{event.window_end:%H:%M} UTC"
    since = f"since {event.since:%H:%M} UTC ({event.since:%Y-%m-%d})"
    if event.kind == FIRING:
        return (
            f"FIRING {event.metric}: {words} {event.value_percent:.1f} % > "
            f"{event.threshold_percent:.1f} % in {when}, {since}"
        )
    return (
        f"RESOLVED {event.metric}: {words} {event.value_percent:.1f} % <= "
        f"{event.threshold_percent:.1f} % in {when}; anomalous {since}"
    )


def _escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
