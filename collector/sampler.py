"""Reads the host with psutil (and NVML) and builds one :class:`~schemas.metrics.MetricsSample`.

The sampler keeps the previous counter readings so each sample carries rates
over the real time elapsed (a monotonic clock, immune to wall-clock steps). The
rules (rates, shares, resets) are the pure functions of :mod:`collector.rates`;
this module only reads and assembles.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psutil

from collector.gpu import NvidiaGpus
from collector.identity import host_info
from collector.procfs import Memory, ProcFiles
from collector.rates import busy_percent, counter_delta, counter_rates, time_shares
from schemas.metrics import (
    SCHEMA_VERSION,
    Battery,
    CollectorStatus,
    CpuActivity,
    CpuMetrics,
    CpuTimes,
    DiskIO,
    DiskUsage,
    Fan,
    InterfaceIO,
    LoadAverage,
    MemoryMetrics,
    MetricsSample,
    NetworkMetrics,
    SwapMetrics,
    Tag,
    Temperature,
)

T = TypeVar("T")

# Filesystems that hold no user data; their usage figures are meaningless.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs",
        "overlay", "proc", "pstore", "ramfs", "securityfs", "squashfs", "sysfs",
        "tmpfs", "tracefs",
    }
)  # fmt: skip
# Block devices backed by files or memory: their I/O is already counted on a real disk.
PSEUDO_BLOCK_DEVICES = ("loop", "ram")
# Mounts change rarely and listing them costs as much as the rest of a sample.
MOUNTS_REFRESH_S = 60.0
# A host without temperature sensors, fans or a battery (most servers and VMs) looks
# for them again this often instead of scanning /sys for nothing every sample.
ABSENT_RECHECK_S = 60.0
# Guest time is already inside user time in the kernel's accounting: counting it
# again would make the shares add up to more than 100.
_CPU_TIME_SKIPPED = frozenset({"guest", "guest_nice"})


def utc_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, the schema's timestamp format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Counters:
    """The cumulative counters of one sample, kept to compute the next sample's rates."""

    taken_at: float
    network: dict[str, Any]
    disks: dict[str, Any]
    activity: Any
    swap: tuple[int, int]


class Sampler:
    """Takes samples of this host. Not thread-safe; one per collector."""

    def __init__(
        self,
        host_id: str,
        interval_s: float,
        tags: Sequence[tuple[str, str]] = (),
        gpus: NvidiaGpus | None = None,
    ) -> None:
        """``gpus``: from :meth:`NvidiaGpus.open`, ``None`` on hosts without one."""
        self.host_id = host_id
        self.hostname = socket.gethostname()
        self.interval_s = float(interval_s)
        self._tags = [Tag(key, value) for key, value in tags] or None
        self._gpus = gpus
        self._boot_time = psutil.boot_time()
        self._host = host_info(self._boot_time, time.time())
        self._mounts: list[Any] = []
        self._mounts_read_at = -math.inf
        self._previous: _Counters | None = None
        self._absent_until: dict[Callable[[], Any], float] = {}
        fields = psutil.cpu_times()._fields
        self._cpu_fields = [f for f in fields if f not in _CPU_TIME_SKIPPED]
        self._cpu_index = [i for i, f in enumerate(fields) if f not in _CPU_TIME_SKIPPED]
        self._cpu_width = len(fields)
        # On Linux, the files psutil would open several times a sample stay open.
        self._proc = ProcFiles.open()
        # CPU shares need a previous reading: prime it so even the first sample is real.
        self._cpu_previous = self._read_cpu()[0]

    def sample(
        self, now: datetime | None = None, status: CollectorStatus | None = None
    ) -> MetricsSample:
        """Read the host now; ``now`` (UTC) overrides the sample's timestamp and
        ``status`` is the collector's own state to report with it."""
        taken_at = time.monotonic()
        previous = self._previous
        elapsed_s = taken_at - previous.taken_at if previous else 0.0
        cores, activity = self._read_cpu()
        memory, swapped = self._read_memory()
        counters = _Counters(
            taken_at=taken_at,
            network=self._proc.net() if self._proc else psutil.net_io_counters(pernic=True),
            disks=_disk_io_counters(self._proc),
            activity=activity,
            swap=swapped,
        )
        self._previous = counters
        swapped_in, swapped_out = counter_rates(
            previous.swap if previous else None, counters.swap, elapsed_s
        )
        return MetricsSample(
            schema_version=SCHEMA_VERSION,
            event_id=uuid.uuid4().hex,
            host_id=self.host_id,
            hostname=self.hostname,
            timestamp=utc_timestamp(now or datetime.now(UTC)),
            interval_s=self.interval_s,
            cpu=self._cpu(cores, previous, counters, elapsed_s),
            memory=MemoryMetrics(
                total_bytes=memory.total,
                available_bytes=memory.available,
                used_bytes=memory.used,
                percent=float(memory.percent),
                swap=SwapMetrics(
                    total_bytes=memory.swap_total,
                    used_bytes=memory.swap_used,
                    percent=float(memory.swap_percent),
                    swapped_in_bytes_per_s=swapped_in,
                    swapped_out_bytes_per_s=swapped_out,
                ),
            ),
            disks=self._disk_usage(taken_at),
            network=network_metrics(
                previous.network if previous else None, counters.network, elapsed_s
            ),
            elapsed_s=elapsed_s if previous else None,
            disk_io=disk_io(previous.disks if previous else None, counters.disks, elapsed_s),
            temperatures=self._unless_absent(temperatures, taken_at),
            fans=self._unless_absent(fans, taken_at),
            battery=self._unless_absent(battery, taken_at),
            gpus=(self._gpus.read() or None) if self._gpus else None,
            host=dataclasses.replace(self._host, uptime_s=max(0.0, time.time() - self._boot_time)),
            tags=self._tags,
            collector=status,
        )

    def close(self) -> None:
        """Release NVML and the /proc files, if they were opened."""
        if self._gpus:
            self._gpus.close()
        if self._proc:
            self._proc.close()
            self._proc = None

    def _read_cpu(self) -> tuple[list[list[float]], Any]:
        """Each core's CPU times (the fields of ``_cpu_fields``) and the activity counters."""
        index = self._cpu_index
        if self._proc:
            cores, activity = self._proc.cpu(self._cpu_width)
            return [[core[i] for i in index] for core in cores], activity
        per_core = psutil.cpu_times(percpu=True)
        return [[core[i] for i in index] for core in per_core], psutil.cpu_stats()

    def _read_memory(self) -> tuple[Memory, tuple[int, int]]:
        """Memory and swap figures, and the bytes swapped in and out since boot."""
        if self._proc:
            return self._proc.memory(), self._proc.swapped()
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        figures = Memory(
            memory.total,
            memory.available,
            memory.used,
            memory.percent,
            swap.total,
            swap.used,
            swap.percent,
        )
        return figures, (swap.sin, swap.sout)

    def _cpu(
        self,
        current: list[list[float]],
        previous: _Counters | None,
        counters: _Counters,
        elapsed_s: float,
    ) -> CpuMetrics:
        before, self._cpu_previous = self._cpu_previous, current
        # One read of the per-core times gives both the per-core and the total figures.
        total = time_shares(
            [sum(col) for col in zip(*before, strict=True)],
            [sum(col) for col in zip(*current, strict=True)],
        )
        shares = dict(zip(self._cpu_fields, total or [0.0] * len(self._cpu_fields), strict=True))
        load_1m, load_5m, load_15m = psutil.getloadavg()
        activity = counter_rates(
            previous.activity if previous else None, counters.activity, elapsed_s
        )
        return CpuMetrics(
            percent=busy_share(shares),
            per_core_percent=[
                busy_share(dict(zip(self._cpu_fields, core_shares, strict=True)))
                if (core_shares := time_shares(old, new))
                else 0.0
                for old, new in zip(before, current, strict=True)
            ],
            times=cpu_times_split(shares),
            load=LoadAverage(load_1m=load_1m, load_5m=load_5m, load_15m=load_15m),
            activity=CpuActivity(
                ctx_switches_per_s=activity[0],
                interrupts_per_s=activity[1],
                soft_interrupts_per_s=activity[2],
                # Linux does not count system calls: psutil reports 0 there.
                syscalls_per_s=activity[3] if counters.activity.syscalls else None,
            ),
        )

    def _unless_absent(self, read: Callable[[], T | None], taken_at: float) -> T | None:
        # A family found is read every sample; one found missing is looked for once a minute.
        if taken_at < self._absent_until.get(read, -math.inf):
            return None
        found = read()
        if found is None:
            self._absent_until[read] = taken_at + ABSENT_RECHECK_S
        return found

    def _disk_usage(self, taken_at: float) -> list[DiskUsage]:
        if taken_at - self._mounts_read_at >= MOUNTS_REFRESH_S:
            self._mounts = real_mounts()
            self._mounts_read_at = taken_at
        return disk_usage(self._mounts)


def busy_share(shares: dict[str, float]) -> float:
    """CPU busy percent from time shares: everything but idle and waiting for I/O."""
    return max(0.0, min(100.0, 100.0 - shares.get("idle", 0.0) - shares.get("iowait", 0.0)))


def cpu_times_split(shares: dict[str, float]) -> CpuTimes:
    """Five shares that add up to 100: ``user`` includes ``nice``, ``system`` includes
    hard and soft interrupts; ``iowait`` and ``steal`` only where the platform has them."""
    return CpuTimes(
        user_percent=min(100.0, shares.get("user", 0.0) + shares.get("nice", 0.0)),
        system_percent=min(
            100.0, shares.get("system", 0.0) + shares.get("irq", 0.0) + shares.get("softirq", 0.0)
        ),
        idle_percent=shares.get("idle", 0.0),
        iowait_percent=shares.get("iowait"),
        steal_percent=shares.get("steal"),
    )


def network_metrics(
    previous: dict[str, Any] | None, current: dict[str, Any], elapsed_s: float
) -> NetworkMetrics:
    """Per-interface rates and their totals.

    Totals add up each interface's own delta, so a reset of one interface costs
    that interface's figures for one sample, not everyone's.
    """
    interfaces = []
    all_rates = []
    sent = recv = sent_delta = recv_delta = 0
    for name, now in current.items():
        before = previous.get(name) if previous else None
        rates = counter_rates(before, now, elapsed_s)
        all_rates.append(rates)
        interfaces.append(InterfaceIO(name, *rates))
        sent += now.bytes_sent
        recv += now.bytes_recv
        sent_delta += counter_delta(before.bytes_sent if before else None, now.bytes_sent)
        recv_delta += counter_delta(before.bytes_recv if before else None, now.bytes_recv)
    totals = [sum(column) for column in zip(*all_rates, strict=True)] or [0.0] * 8
    return NetworkMetrics(
        bytes_sent=sent,
        bytes_recv=recv,
        bytes_sent_delta=sent_delta,
        bytes_recv_delta=recv_delta,
        bytes_sent_per_s=totals[0],
        bytes_recv_per_s=totals[1],
        packets_sent_per_s=totals[2],
        packets_recv_per_s=totals[3],
        errors_in_per_s=totals[4],
        errors_out_per_s=totals[5],
        drops_in_per_s=totals[6],
        drops_out_per_s=totals[7],
        interfaces=interfaces or None,
    )


def _disk_io_counters(proc: ProcFiles | None = None) -> dict[str, Any]:
    try:
        counters = proc.disks() if proc else psutil.disk_io_counters(perdisk=True) or {}
    except (RuntimeError, OSError):
        # Containers and some VMs expose no block device statistics at all.
        return {}
    return {name: c for name, c in counters.items() if not name.startswith(PSEUDO_BLOCK_DEVICES)}


def disk_io(
    previous: dict[str, Any] | None, current: dict[str, Any], elapsed_s: float
) -> list[DiskIO] | None:
    """Rates of each block device; ``None`` where the platform reports none."""
    devices = []
    for name, now in current.items():
        before = previous.get(name) if previous else None
        read_bytes, write_bytes, reads, writes = counter_rates(
            (before.read_bytes, before.write_bytes, before.read_count, before.write_count)
            if before
            else None,
            (now.read_bytes, now.write_bytes, now.read_count, now.write_count),
            elapsed_s,
        )
        busy = getattr(now, "busy_time", None)
        devices.append(
            DiskIO(
                device=name,
                read_bytes_per_s=read_bytes,
                write_bytes_per_s=write_bytes,
                reads_per_s=reads,
                writes_per_s=writes,
                busy_percent=None
                if busy is None
                else busy_percent(before.busy_time if before else None, busy, elapsed_s),
            )
        )
    return devices or None


def real_mounts() -> list[Any]:
    """Mounted filesystems that hold data, once per mount point."""
    seen: dict[str, Any] = {}
    for part in psutil.disk_partitions(all=False):
        if part.fstype not in PSEUDO_FILESYSTEMS and part.mountpoint not in seen:
            seen[part.mountpoint] = part
    return list(seen.values())


def disk_usage(mounts: Sequence[Any] | None = None) -> list[DiskUsage]:
    """Usage of each real mounted filesystem (``mounts``: from :func:`real_mounts`)."""
    usages = []
    for part in real_mounts() if mounts is None else mounts:
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            # Unmounted since listed, or not ours to read: nothing to report.
            continue
        usages.append(
            DiskUsage(
                mountpoint=part.mountpoint,
                total_bytes=usage.total,
                used_bytes=usage.used,
                free_bytes=usage.free,
                percent=float(usage.percent),
                device=part.device or None,
                fstype=part.fstype or None,
            )
        )
    return usages


def _finite(value: float | None) -> float | None:
    # Sensors report NaN or absurd values when unplugged; one bad figure must not
    # get the whole sample rejected downstream.
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def temperatures() -> list[Temperature] | None:
    """Every temperature sensor psutil finds, degrees Celsius; ``None`` without any."""
    read = getattr(psutil, "sensors_temperatures", None)
    readings = []
    for sensor, entries in (read() if read else {}).items():
        for position, entry in enumerate(entries):
            current = _finite(entry.current)
            if current is not None:
                readings.append(
                    Temperature(
                        sensor=sensor,
                        label=entry.label or str(position),
                        current_celsius=current,
                        high_celsius=_finite(entry.high),
                        critical_celsius=_finite(entry.critical),
                    )
                )
    return readings or None


def fans() -> list[Fan] | None:
    """Every fan psutil finds, RPM; ``None`` without any."""
    read = getattr(psutil, "sensors_fans", None)
    found = [
        Fan(sensor=sensor, label=entry.label or str(position), speed_rpm=int(entry.current))
        for sensor, entries in (read() if read else {}).items()
        for position, entry in enumerate(entries)
    ]
    return found or None


def battery() -> Battery | None:
    """The battery's charge, power source and time left; ``None`` without a battery."""
    read = getattr(psutil, "sensors_battery", None)
    return battery_of(read() if read else None)


def battery_of(state: Any) -> Battery | None:
    """:class:`Battery` from psutil's ``sbattery`` (``None``: no battery)."""
    if state is None:
        return None
    # psutil's POWER_TIME_UNKNOWN (-1) and POWER_TIME_UNLIMITED (-2) are not durations.
    time_left_s = float(state.secsleft) if state.secsleft >= 0 else None
    return Battery(
        percent=max(0.0, min(100.0, float(state.percent))),
        plugged=state.power_plugged,
        time_left_s=None if state.power_plugged else time_left_s,
    )
