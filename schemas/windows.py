"""Window maths for gold: tumbling windows, mergeable aggregates, event-time judging.

Pure functions only: the gold agent keeps one :class:`HostState` per host (its
watermark and its open windows, each a :class:`WindowAggregate`) and merges each
batch's partial aggregates into it; the state is one table value, written once
per host per checkpoint however many samples and windows changed. A window's CPU
and memory p95 come from the sketch in :mod:`schemas.quantiles`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from schemas.quantiles import bucket, merge_counts

INT64_MAX = 2**63 - 1
"""Byte totals saturate here: PostgreSQL's bigint and BigQuery's INT64 end there
(9.2 EB; only a broken counter gets near it)."""

WINDOW_SIZES_S = {"5min": 300, "1h": 3600}
"""The gold windows: name -> size in seconds."""


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


@dataclass(frozen=True, slots=True)
class WindowAggregate:
    """Everything gold keeps for one host and one window; merges exactly."""

    count: int = 0
    cpu_sum: float = 0.0
    cpu_max: float = 0.0
    cpu_buckets: dict[int, int] = field(default_factory=dict)
    memory_sum: float = 0.0
    memory_max: float = 0.0
    memory_buckets: dict[int, int] = field(default_factory=dict)
    net_bytes_sent: int = 0
    net_bytes_recv: int = 0
    disk_max_percent: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)
    """Highest Kafka offset merged, per partition: a replayed sample at or below it
    is skipped, so a batch processed twice after a crash counts once."""

    def covers(self, sample: WindowSample) -> bool:
        """Whether ``sample`` was already merged (a replay after a crash)."""
        return sample.offset <= self.offsets.get(sample.partition, -1)


def aggregate(samples: Iterable[WindowSample]) -> WindowAggregate:
    """The aggregate of some samples of one host and window."""
    # Runs for every sample and window: comparisons instead of max() calls.
    cpu: dict[int, int] = {}
    memory: dict[int, int] = {}
    offsets: dict[int, int] = {}
    count = 0
    cpu_sum = memory_sum = cpu_max = memory_max = disk_max = 0.0
    sent = recv = 0
    for s in samples:
        count += 1
        cpu_sum += s.cpu_percent
        memory_sum += s.memory_percent
        if s.cpu_percent > cpu_max:
            cpu_max = s.cpu_percent
        if s.memory_percent > memory_max:
            memory_max = s.memory_percent
        if s.disk_max_percent > disk_max:
            disk_max = s.disk_max_percent
        sent += s.net_bytes_sent_delta
        recv += s.net_bytes_recv_delta
        cpu[s.cpu_bucket] = cpu.get(s.cpu_bucket, 0) + 1
        memory[s.memory_bucket] = memory.get(s.memory_bucket, 0) + 1
        if s.offset > offsets.get(s.partition, -1):
            offsets[s.partition] = s.offset
    return WindowAggregate(
        count,
        cpu_sum,
        cpu_max,
        cpu,
        memory_sum,
        memory_max,
        memory,
        min(sent, INT64_MAX),
        min(recv, INT64_MAX),
        disk_max,
        offsets,
    )


def merge(a: WindowAggregate, b: WindowAggregate) -> WindowAggregate:
    """The aggregate of the samples of ``a`` and of ``b`` (disjoint sets of samples)."""
    offsets = dict(a.offsets)
    for partition, offset in b.offsets.items():
        offsets[partition] = max(offsets.get(partition, -1), offset)
    return replace(
        a,
        count=a.count + b.count,
        cpu_sum=a.cpu_sum + b.cpu_sum,
        cpu_max=max(a.cpu_max, b.cpu_max),
        cpu_buckets=merge_counts(a.cpu_buckets, b.cpu_buckets),
        memory_sum=a.memory_sum + b.memory_sum,
        memory_max=max(a.memory_max, b.memory_max),
        memory_buckets=merge_counts(a.memory_buckets, b.memory_buckets),
        net_bytes_sent=min(a.net_bytes_sent + b.net_bytes_sent, INT64_MAX),
        net_bytes_recv=min(a.net_bytes_recv + b.net_bytes_recv, INT64_MAX),
        disk_max_percent=max(a.disk_max_percent, b.disk_max_percent),
        offsets=offsets,
    )


def is_late(sample_time_s: float, size_s: int, watermark_s: float, grace_s: float) -> bool:
    """Whether a sample arrives after its window closed: the window's end plus the grace
    lies before the watermark (the newest sample time seen on its partition)."""
    return window_start(sample_time_s, size_s) + size_s + grace_s < watermark_s


def fold(
    existing: WindowAggregate | None, samples: Iterable[WindowSample]
) -> WindowAggregate | None:
    """Merge into ``existing`` the samples it does not cover yet; None if none is new."""
    base = existing or WindowAggregate()
    fresh = [s for s in samples if not base.covers(s)]
    if not fresh:
        return None
    return merge(base, aggregate(fresh))


@dataclass(frozen=True, slots=True)
class Watermark:
    """Event-time progress of one host, kept in a table so it survives a restart."""

    newest_s: float
    """Newest sample time seen of the host, epoch seconds."""
    partition: int
    offset: int
    """Kafka position of the last sample judged: anything at or before it was judged
    before (and merged or found late), so a replay judges nothing twice."""


@dataclass
class Judged:
    """A batch's samples sorted by :func:`judge`."""

    on_time: dict[str, list[WindowSample]]
    """Window name -> samples whose window is still open."""
    late: list[tuple[WindowSample, str]]
    """(sample, window name) pairs whose window had closed."""
    replayed: list[WindowSample]
    """Samples judged before a restart: merged already, or late then."""
    watermarks: dict[str, Watermark]
    """The hosts' watermarks after the batch."""


def judge(
    samples: Iterable[WindowSample], watermarks: dict[str, Watermark], grace_s: float
) -> Judged:
    """Sort samples, in Kafka order, into on time and late for each window size.

    A sample is late for a window size when that window had closed (end plus
    ``grace_s``) by the newest sample time of its host seen before it. Event
    time, not the wall clock: a worker catching up on a backlog drops nothing.
    """
    # (newest_s, partition, offset) per host: tuples, as a Watermark per sample costs more.
    marks = {host: (m.newest_s, m.partition, m.offset) for host, m in watermarks.items()}
    judged = Judged({name: [] for name in WINDOW_SIZES_S}, [], [], {})
    for s in samples:
        mark = marks.get(s.host_id)
        if mark is not None and mark[1] == s.partition and s.offset <= mark[2]:
            judged.replayed.append(s)  # the replay must not judge it again
            continue
        moment = s.sample_time_s
        newest = mark[0] if mark is not None and mark[0] > moment else moment
        for name, size_s in WINDOW_SIZES_S.items():
            if is_late(moment, size_s, newest, grace_s):
                judged.late.append((s, name))
            else:
                judged.on_time[name].append(s)
        marks[s.host_id] = (newest, s.partition, s.offset)
    judged.watermarks = {host: Watermark(*mark) for host, mark in marks.items()}
    return judged


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


def encode_state(state: HostState) -> bytes:
    """The state as the table stores it: compact JSON."""
    return orjson.dumps(
        {
            "mark": [state.mark.newest_s, state.mark.partition, state.mark.offset],
            "windows": [
                [name, start, _encode_aggregate(agg), state.closed_at.get((name, start))]
                for (name, start), agg in state.windows.items()
            ],
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
        dict(cpu),
        memory_sum,
        memory_max,
        dict(memory),
        sent,
        recv,
        disk,
        dict(offsets),
    )
