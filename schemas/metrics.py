"""The record a collector publishes to ``machine_metrics``: one sample of one host.

Units are in the field names: ``_bytes``, ``_per_s`` (per second), ``_percent``
(0-100). Timestamps are UTC in ISO 8601 with a ``Z`` suffix. A record is JSON
(orjson serialises these dataclasses natively); its ``schema_version`` says which
shape it has so consumers can reject what they do not understand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 1
"""Version of :class:`MetricsSample` that this code produces and accepts."""


@dataclass(frozen=True, slots=True)
class CpuMetrics:
    """CPU utilisation since the previous sample, percent 0-100 of all cores."""

    percent: float
    per_core_percent: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MemoryMetrics:
    """Virtual memory at sample time."""

    total_bytes: int
    available_bytes: int
    used_bytes: int
    percent: float


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """Usage of one mounted filesystem at sample time."""

    mountpoint: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float


@dataclass(frozen=True, slots=True)
class NetworkMetrics:
    """Network I/O summed over interfaces.

    ``*_delta`` fields are the counter increase since the previous sample and the
    ``*_per_s`` rates that increase over the real elapsed time; both are 0 on a
    collector's first sample and when a counter went backwards (reboot, wrap,
    interface reset). Sum deltas over samples for traffic totals. The plain
    byte fields are the cumulative counters as the kernel reports them: never
    sum those.
    """

    bytes_sent: int
    bytes_recv: int
    bytes_sent_delta: int
    bytes_recv_delta: int
    bytes_sent_per_s: float
    bytes_recv_per_s: float


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """One sample of one host, as published to Kafka (keyed by ``host_id``)."""

    schema_version: int
    event_id: str
    """Unique per sample (UUID4 hex); sinks deduplicate on it."""
    host_id: str
    hostname: str
    timestamp: str
    """When the sample was taken, UTC, ISO 8601 (``2026-11-23T19:00:00.000000Z``)."""
    interval_s: float
    """The collector's configured sampling interval, seconds."""
    cpu: CpuMetrics
    memory: MemoryMetrics
    disks: list[DiskUsage]
    network: NetworkMetrics
