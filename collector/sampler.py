"""Reads the host with psutil and builds one :class:`~schemas.metrics.MetricsSample`.

The sampler keeps the previous counter readings so each sample carries rates
over the real time elapsed (a monotonic clock, immune to wall-clock steps).
"""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime

import psutil

from collector.rates import counter_delta, counter_rate
from schemas.metrics import (
    SCHEMA_VERSION,
    CpuMetrics,
    DiskUsage,
    MemoryMetrics,
    MetricsSample,
    NetworkMetrics,
)

# Filesystems that hold no user data; their usage figures are meaningless.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs",
        "overlay", "proc", "pstore", "ramfs", "securityfs", "squashfs", "sysfs",
        "tmpfs", "tracefs",
    }
)  # fmt: skip


def utc_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, the schema's timestamp format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Sampler:
    """Takes samples of this host. Not thread-safe; one per collector."""

    def __init__(self, host_id: str, interval_s: float) -> None:
        self.host_id = host_id
        self.hostname = socket.gethostname()
        self.interval_s = float(interval_s)
        self._previous_net: tuple[int, int] | None = None
        self._previous_at: float | None = None
        # psutil measures CPU between two calls: prime it so the first sample is real.
        psutil.cpu_percent(percpu=True)
        psutil.cpu_percent()

    def sample(self, now: datetime | None = None) -> MetricsSample:
        """Read the host now; ``now`` (UTC) overrides the sample's timestamp."""
        taken_at = time.monotonic()
        elapsed_s = taken_at - self._previous_at if self._previous_at is not None else 0.0
        net = psutil.net_io_counters(pernic=False)
        previous_sent, previous_recv = self._previous_net or (None, None)
        self._previous_net = (net.bytes_sent, net.bytes_recv)
        self._previous_at = taken_at
        memory = psutil.virtual_memory()
        return MetricsSample(
            schema_version=SCHEMA_VERSION,
            event_id=uuid.uuid4().hex,
            host_id=self.host_id,
            hostname=self.hostname,
            timestamp=utc_timestamp(now or datetime.now(UTC)),
            interval_s=self.interval_s,
            cpu=CpuMetrics(
                percent=psutil.cpu_percent(),
                per_core_percent=psutil.cpu_percent(percpu=True),
            ),
            memory=MemoryMetrics(
                total_bytes=memory.total,
                available_bytes=memory.available,
                used_bytes=memory.used,
                percent=memory.percent,
            ),
            disks=disk_usage(),
            network=NetworkMetrics(
                bytes_sent=net.bytes_sent,
                bytes_recv=net.bytes_recv,
                bytes_sent_delta=counter_delta(previous_sent, net.bytes_sent),
                bytes_recv_delta=counter_delta(previous_recv, net.bytes_recv),
                bytes_sent_per_s=counter_rate(previous_sent, net.bytes_sent, elapsed_s),
                bytes_recv_per_s=counter_rate(previous_recv, net.bytes_recv, elapsed_s),
            ),
        )


def disk_usage() -> list[DiskUsage]:
    """Usage of each real mounted filesystem, once per mount point."""
    usages: dict[str, DiskUsage] = {}
    for part in psutil.disk_partitions(all=False):
        if part.fstype in PSEUDO_FILESYSTEMS or part.mountpoint in usages:
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            # Unmounted since listed, or not ours to read: nothing to report.
            continue
        usages[part.mountpoint] = DiskUsage(
            mountpoint=part.mountpoint,
            total_bytes=usage.total,
            used_bytes=usage.used,
            free_bytes=usage.free,
            percent=usage.percent,
        )
    return list(usages.values())
