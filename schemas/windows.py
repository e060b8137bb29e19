"""Window maths for gold: tumbling windows, mergeable aggregates, event-time judging.

Pure functions only: the gold agent keeps one :class:`HostState` per host (its
watermark and its open windows, each a :class:`WindowAggregate`) and merges each
batch's partial aggregates into it; the state is one table value, written once
per host per checkpoint however many samples and windows changed. A window's CPU
and memory p95 come from the sketch in :mod:`schemas.quantiles`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.quantiles import Sketch, bucket

INT64_MAX = 2**63 - 1
"""Byte totals saturate here: PostgreSQL's bigint and BigQuery's INT64 end there
(9.2 EB; only a broken counter gets near it)."""

WINDOW_SIZES_S = {"5min": 300, "1h": 3600}
"""The gold windows: name -> size in seconds."""
_SIZES = tuple(WINDOW_SIZES_S.items())


def window_start(epoch_s: float, size_s: int) -> int:
    """Start (epoch seconds) of the tumbling window of ``size_s`` that holds ``epoch_s``."""
    return int(epoch_s // size_s) * size_s


@dataclass(slots=True)  # not frozen: one per record, and frozen ones build slowly
class WindowSample:
    """What gold needs of one silver row."""

    host_id: str
    sample_time_s: float
    """Epoch seconds, UTC."""
    partition: int
    offset: int
    cpu_percent: float
    memory_percent: float
    disk_max_percent: float
    net_bytes_sent_delta: int
    net_bytes_recv_delta: int
    cpu_bucket: int = field(init=False)
    """Sketch bucket of ``cpu_percent``: found once, merged into both windows."""
    memory_bucket: int = field(init=False)

    def __post_init__(self) -> None:
        self.cpu_bucket = bucket(self.cpu_percent)
        self.memory_bucket = bucket(self.memory_percent)


@dataclass(slots=True)  # not frozen: gold adds each sample to its windows in place
class WindowAggregate:
    """Everything gold keeps for one host and one window."""

    count: int = 0
    cpu_sum: float = 0.0
    cpu_max: float = 0.0
    cpu_buckets: Sketch = field(default_factory=Sketch)
    memory_sum: float = 0.0
    memory_max: float = 0.0
    memory_buckets: Sketch = field(default_factory=Sketch)
    net_bytes_sent: int = 0
    net_bytes_recv: int = 0
    disk_max_percent: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)
    """Highest Kafka offset added, per partition: a replayed sample at or below it
    is skipped, so a batch processed twice after a crash counts once."""

    def covers(self, sample: WindowSample) -> bool:
        """Whether ``sample`` was already added (a replay after a crash)."""
        return sample.offset <= self.offsets.get(sample.partition, -1)

    def add(self, s: WindowSample) -> None:
        """Count ``s`` in the window (the caller checked it is not covered)."""
        # Runs for every sample and window: comparisons instead of max() calls.
        self.count += 1
        self.cpu_sum += s.cpu_percent
        self.memory_sum += s.memory_percent
        if s.cpu_percent > self.cpu_max:
            self.cpu_max = s.cpu_percent
        if s.memory_percent > self.memory_max:
            self.memory_max = s.memory_percent
        if s.disk_max_percent > self.disk_max_percent:
            self.disk_max_percent = s.disk_max_percent
        self.net_bytes_sent = min(self.net_bytes_sent + s.net_bytes_sent_delta, INT64_MAX)
        self.net_bytes_recv = min(self.net_bytes_recv + s.net_bytes_recv_delta, INT64_MAX)
        self.cpu_buckets.add(s.cpu_bucket)
        self.memory_buckets.add(s.memory_bucket)
        if s.offset > self.offsets.get(s.partition, -1):
            self.offsets[s.partition] = s.offset


def aggregate(samples: Iterable[WindowSample]) -> WindowAggregate:
    """The aggregate of some samples of one host and window."""
    agg = WindowAggregate()
    for s in samples:
        if not agg.covers(s):
            agg.add(s)
    return agg


def is_late(sample_time_s: float, size_s: int, watermark_s: float, grace_s: float) -> bool:
    """Whether a sample arrives after its window closed: the window's end plus the grace
    lies before the watermark (the newest sample time seen of its host)."""
    return window_start(sample_time_s, size_s) + size_s + grace_s < watermark_s


@dataclass(frozen=True, slots=True)
class Watermark:
    """Event-time progress of one host, kept in a table so it survives a restart."""

    newest_s: float
    """Newest sample time seen of the host, epoch seconds."""
    partition: int
    offset: int
    """Kafka position of the last sample judged: anything at or before it was judged
    before (and merged or found late), so a replay judges nothing twice."""


def expired_hosts(marks: dict[str, Watermark], retention_s: float) -> list[str]:
    """Hosts whose newest sample is more than ``retention_s`` older than the newest
    sample of any host on the same partition: their windows have expired, and their
    watermarks go too, so state does not grow with every host ever seen. Event time,
    like the windows: a backlog being caught up expires nothing early."""
    newest: dict[int, float] = {}
    for mark in marks.values():
        if mark.newest_s > newest.get(mark.partition, -math.inf):
            newest[mark.partition] = mark.newest_s
    return [
        host for host, mark in marks.items() if mark.newest_s < newest[mark.partition] - retention_s
    ]


WindowKey = tuple[str, int]
"""A host's window: (window name, start in epoch seconds)."""


@dataclass(slots=True)
class HostState:
    """Everything gold keeps of one host, as one table value.

    One value instead of a table entry per window and another for the watermark:
    a batch of 5,000 samples of 5,000 hosts made 15,000 table writes, each with its
    changelog record; and the watermark can never be restored ahead of the windows
    it vouches for, as two tables' changelogs could be.
    """

    mark: Watermark
    windows: dict[WindowKey, WindowAggregate] = field(default_factory=dict)
    """Open windows, and closed ones whose final rows may not be flushed yet."""
    closed_at: dict[WindowKey, int] = field(default_factory=dict)
    """Closed windows -> offset (on ``mark.partition``) of the host's last sample in
    the batch that closed them: once that offset is acknowledged, every sink has
    the window's final row and it leaves the state (:func:`forget_flushed`)."""
    alerting: dict[str, tuple[int, bool]] = field(default_factory=dict)
    """Metrics in anomaly -> (start of the 5-minute window where it began, whether a
    fresh window announced it): :mod:`schemas.alerts`."""
    alerts_judged_s: int = -1
    """Start of the newest closed 5-minute window judged for alerts (-1: none)."""


def close_windows(state: HostState, grace_s: float) -> list[WindowKey]:
    """Mark closed the windows whose end plus ``grace_s`` the watermark passed; return
    those newly closed. No sample can change them any more (:func:`judge`)."""
    closed = []
    for key in state.windows:
        name, start = key
        if key not in state.closed_at and is_late(
            start, WINDOW_SIZES_S[name], state.mark.newest_s, grace_s
        ):
            state.closed_at[key] = state.mark.offset
            closed.append(key)
    return closed


def forget_flushed(state: HostState, acknowledged_offset: int) -> None:
    """Drop the closed windows whose closing batch is acknowledged (every sink flushed
    it): a replay starts after it, so nothing can ask for them again."""
    for key, offset in list(state.closed_at.items()):
        if offset <= acknowledged_offset:
            del state.closed_at[key]
            del state.windows[key]


@dataclass
class Advanced:
    """What :func:`advance` did with one host's samples of a batch."""

    state: HostState
    touched: set[WindowKey]
    """Windows whose row must be written: those that took a sample, and those of
    replayed samples (written again as stored: a crash between the state's flush and
    the rows' must not leave the rows behind)."""
    late: list[tuple[WindowSample, str]]
    """(sample, window name) pairs whose window had closed: in silver, not in gold."""


def advance(state: HostState | None, samples: Sequence[WindowSample], grace_s: float) -> Advanced:
    """Add one host's samples, in Kafka order, to its windows (in place).

    A sample is late for a window size when that window had closed (end plus
    ``grace_s``) by the newest sample time of the host seen until then: event time,
    not the wall clock, so a worker catching up on a backlog drops nothing. A sample
    at or before the watermark's offset was judged before a restart (added, or found
    late then) and is judged again by nobody.
    """
    first = samples[0]
    if state is None:
        state = HostState(Watermark(-math.inf, first.partition, -1))
    newest, partition, offset = state.mark.newest_s, state.mark.partition, state.mark.offset
    windows = state.windows
    touched: set[WindowKey] = set()
    late: list[tuple[WindowSample, str]] = []
    for s in samples:
        moment = s.sample_time_s
        if s.partition == partition and s.offset <= offset:
            touched.update((name, window_start(moment, size)) for name, size in _SIZES)
            continue
        if moment > newest:
            newest = moment
        for name, size in _SIZES:
            if is_late(moment, size, newest, grace_s):
                late.append((s, name))
                continue
            key = (name, window_start(moment, size))
            window = windows.get(key)
            if window is None:
                window = windows[key] = WindowAggregate()
            if not window.covers(s):
                window.add(s)
            touched.add(key)
        partition, offset = s.partition, s.offset
    state.mark = Watermark(newest, partition, offset)
    return Advanced(state, touched, late)


def encode_state(state: HostState) -> bytes:
    """The state as the table stores it: compact JSON."""
    return orjson.dumps(
        {
            "mark": [state.mark.newest_s, state.mark.partition, state.mark.offset],
            "windows": [
                [name, start, _encode_aggregate(agg), state.closed_at.get((name, start))]
                for (name, start), agg in state.windows.items()
            ],
            "alerting": [[metric, *held] for metric, held in state.alerting.items()],
            "alerts_judged_s": state.alerts_judged_s,
        }
    )


def decode_state(raw: bytes) -> HostState:
    """Inverse of :func:`encode_state`."""
    data = orjson.loads(raw)
    state = HostState(Watermark(*data["mark"]))
    for name, start, agg, closed_at in data["windows"]:
        state.windows[(name, start)] = _decode_aggregate(agg)
        if closed_at is not None:
            state.closed_at[(name, start)] = closed_at
    # A state stored before alerts existed has neither: nothing in anomaly, nothing judged.
    state.alerting = {
        metric: (since, announced) for metric, since, announced in data.get("alerting", [])
    }
    state.alerts_judged_s = data.get("alerts_judged_s", -1)
    return state


def _encode_aggregate(agg: WindowAggregate) -> list[object]:
    # A list in field order: the state is written for every host at every checkpoint,
    # and field names would double its size.
    return [
        agg.count,
        agg.cpu_sum,
        agg.cpu_max,
        [*agg.cpu_buckets.items()],
        agg.memory_sum,
        agg.memory_max,
        [*agg.memory_buckets.items()],
        agg.net_bytes_sent,
        agg.net_bytes_recv,
        agg.disk_max_percent,
        [*agg.offsets.items()],
    ]


def _decode_aggregate(fields: list[Any]) -> WindowAggregate:
    (count, cpu_sum, cpu_max, cpu, memory_sum, memory_max, memory, sent, recv, disk, offsets) = (
        fields
    )
    return WindowAggregate(
        count,
        cpu_sum,
        cpu_max,
        Sketch(cpu),
        memory_sum,
        memory_max,
        Sketch(memory),
        sent,
        recv,
        disk,
        dict(offsets),
    )
