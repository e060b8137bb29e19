"""Gold's summary rows and the anomaly flags they carry (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.quantiles import Sketch, quantile
from schemas.windows import WindowAggregate


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Anomaly thresholds, percent 0-100."""

    cpu_p95_percent: float = 90.0
    memory_max_percent: float = 90.0
    disk_max_percent: float = 90.0


@dataclass(frozen=True, slots=True)
class GoldRow:
    """``gold.perf_5min_summary`` / ``gold.perf_1h_summary``: one host, one window."""

    host_id: str
    window_start: datetime
    window_end: datetime
    sample_count: int
    cpu_avg_percent: float
    cpu_max_percent: float
    cpu_p95_percent: float
    memory_avg_percent: float
    memory_max_percent: float
    memory_p95_percent: float
    net_bytes_sent: int
    """Sum of the samples' counter deltas, bytes."""
    net_bytes_recv: int
    disk_max_percent: float
    cpu_anomaly: bool
    memory_anomaly: bool
    disk_anomaly: bool


@dataclass(frozen=True, slots=True)
class GoldWindow:
    """One host's window as gold last folded it: its row is built when written."""

    host_id: str
    start_s: int
    """Epoch seconds."""
    size_s: int
    aggregate: WindowAggregate


def p95(sketch: Sketch, count: int, maximum: float) -> float:
    """A window's p95 from its sketch, exact where the window's maximum decides it.

    The nearest rank, ceil(0.95 n), is n itself for fewer than 20 samples (a 5-minute
    window of a host sending every 15 s or less often), whose p95 is then their
    maximum; and no p95 exceeds the maximum, which the sketch's bucket can.
    """
    if math.ceil(0.95 * count) >= count:
        return maximum
    return min(quantile(sketch, 0.95), maximum)


def gold_row(
    host_id: str, start_s: int, size_s: int, agg: WindowAggregate, thresholds: Thresholds
) -> GoldRow:
    """The summary row of one window's aggregate, anomaly flags included."""
    cpu_p95 = p95(agg.cpu_buckets, agg.count, agg.cpu_max)
    memory_p95 = p95(agg.memory_buckets, agg.count, agg.memory_max)
    count = max(agg.count, 1)
    return GoldRow(
        host_id=host_id,
        window_start=datetime.fromtimestamp(start_s, tz=UTC),
        window_end=datetime.fromtimestamp(start_s + size_s, tz=UTC),
        sample_count=agg.count,
        cpu_avg_percent=agg.cpu_sum / count,
        cpu_max_percent=agg.cpu_max,
        cpu_p95_percent=cpu_p95,
        memory_avg_percent=agg.memory_sum / count,
        memory_max_percent=agg.memory_max,
        memory_p95_percent=memory_p95,
        net_bytes_sent=agg.net_bytes_sent,
        net_bytes_recv=agg.net_bytes_recv,
        disk_max_percent=agg.disk_max_percent,
        cpu_anomaly=cpu_p95 > thresholds.cpu_p95_percent,
        memory_anomaly=agg.memory_max > thresholds.memory_max_percent,
        disk_anomaly=agg.disk_max_percent > thresholds.disk_max_percent,
    )
