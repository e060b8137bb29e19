"""Reads the host with psutil (and NVML) and builds one sample: the JSON document of a
:class:`~schemas.metrics.MetricsSample`.

The document is built as plain dicts and lists, keys in the model's field order
and optional fields left out when absent, which orjson serialises in one C call:
building the dataclasses first cost more CPU than reading the host
(``tests/unit/test_collector.py`` checks that the worker decodes it into the
model and encodes it back to the same bytes).

The sampler keeps the previous counter readings so each sample carries rates
over the real time elapsed (a monotonic clock, immune to wall-clock steps). The
rules (rates, shares, resets) are the pure functions of :mod:`collector.rates`;
this module only reads and assembles.
"""

from __future__ import annotations

import math
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import psutil

from collector.identity import host_info
from collector.procfs import DiskCounters, Memory, ProcFiles
from collector.rates import busy_percent, busy_share, counter_delta, counter_rates, time_shares
from schemas.metrics import SCHEMA_VERSION, utc_timestamp

if TYPE_CHECKING:
    from collector.gpu import NvidiaGpus

T = TypeVar("T")
Document = dict[str, Any]
"""A sample or one of its groups as JSON-ready dicts (see :mod:`schemas.metrics`)."""

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
FIRST_CPU_SPAN_S = 0.1
"""Least time the first sample's CPU figures are measured over: at 100 ticks a second,
readings closer together than a tick have nothing to divide."""
# Guest time is already inside user time in the kernel's accounting: counting it
# again would make the shares add up to more than 100. It comes last on every
# platform that has it, so the fields kept are a prefix.
_CPU_TIME_SKIPPED = frozenset({"guest", "guest_nice"})
_CPU_IDLE_FIELDS = ("idle", "iowait")
_INTERFACE_KEYS = (
    "interface", "bytes_sent_per_s", "bytes_recv_per_s", "packets_sent_per_s",
    "packets_recv_per_s", "errors_in_per_s", "errors_out_per_s", "drops_in_per_s",
    "drops_out_per_s",
)  # fmt: skip
""":class:`~schemas.metrics.InterfaceIO`: psutil's ``snetio`` counters, in its order."""
_DISK_KEYS = ("device", "read_bytes_per_s", "write_bytes_per_s", "reads_per_s", "writes_per_s")
""":class:`~schemas.metrics.DiskIO`: :class:`~collector.procfs.DiskCounters`, in its order."""


class _Counters(NamedTuple):
    """The cumulative counters of one sample, kept to compute the next sample's rates."""

    taken_at: float
    network: dict[str, Any]
    disks: dict[str, DiskCounters]
    activity: Any
    swap: tuple[int, int] | None


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
        self._tags = [{"key": key, "value": value} for key, value in tags] or None
        self._gpus = gpus
        self._boot_time = psutil.boot_time()
        self._host = host_info(self._boot_time)
        self._mounts: list[Any] = []
        self._mounts_read_at = -math.inf
        self._absent_until: dict[Callable[[], Any], float] = {}
        fields = psutil.cpu_times()._fields
        self._cpu_fields = [f for f in fields if f not in _CPU_TIME_SKIPPED]
        # On Linux, the files psutil would open several times a sample stay open.
        self._proc = ProcFiles.open()
        self._previous: _Counters | None = None
        # CPU shares need a previous reading: prime it so even the first sample is real.
        self._cpu_previous = self._read_cpu()[0]
        self._cpu_primed_at = time.monotonic()

    def sample(self, status: tuple[int, int] | None = None) -> Document:
        """Read the host now; ``status`` is the collector's own state to report with it:
        (samples waiting in the spool, samples the spool ever dropped)."""
        previous = self._previous
        if previous is None:
            wait_s = self._cpu_primed_at + FIRST_CPU_SPAN_S - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
        taken_at = time.monotonic()
        elapsed_s = taken_at - previous.taken_at if previous else 0.0
        proc = self._proc
        cores, activity = self._read_cpu()
        memory, swapped = self._read_memory()
        network = proc.net() if proc else psutil.net_io_counters(pernic=True)
        disks = _disk_io_counters(proc)
        self._previous = _Counters(taken_at, network, disks, activity, swapped)
        swapped_in, swapped_out = (
            counter_rates(previous.swap if previous else None, swapped, elapsed_s)
            if swapped
            else (0.0, 0.0)
        )
        document: Document = {
            "schema_version": SCHEMA_VERSION,
            "event_id": uuid.uuid4().hex,
            "host_id": self.host_id,
            "hostname": self.hostname,
            "timestamp": utc_timestamp(datetime.now(UTC)),
            "interval_s": self.interval_s,
            "cpu": self._cpu(cores, previous.activity if previous else None, activity, elapsed_s),
            "memory": {
                "total_bytes": memory.total,
                "available_bytes": memory.available,
                "used_bytes": memory.used,
                "percent": float(memory.percent),
                "swap": {
                    "total_bytes": memory.swap_total,
                    "used_bytes": memory.swap_used,
                    "percent": float(memory.swap_percent),
                    "swapped_in_bytes_per_s": swapped_in,
                    "swapped_out_bytes_per_s": swapped_out,
                },
            },
            "disks": self._disk_usage(taken_at),
            "network": network_metrics(previous.network if previous else None, network, elapsed_s),
        }
        if previous:
            document["elapsed_s"] = elapsed_s
        optional = present(
            (
                ("disk_io", disk_io(previous.disks if previous else None, disks, elapsed_s)),
                ("temperatures", self._unless_absent(temperatures, taken_at)),
                ("fans", self._unless_absent(fans, taken_at)),
                ("battery", self._unless_absent(battery, taken_at)),
                ("gpus", (self._gpus.read() or None) if self._gpus else None),
                ("host", {**self._host, "uptime_s": max(0.0, time.time() - self._boot_time)}),
                ("tags", self._tags),
                (
                    "collector",
                    {"spooled_samples": status[0], "dropped_samples": status[1]}
                    if status
                    else None,
                ),
            )
        )
        document.update(optional)
        return document

    def close(self) -> None:
        """Release NVML and the /proc files, if they were opened."""
        if self._gpus:
            self._gpus.close()
        if self._proc:
            self._proc.close()
            self._proc = None

    def _read_cpu(self) -> tuple[Sequence[Sequence[float]], Any]:
        """Each core's CPU times (the fields of ``_cpu_fields``, any unit) and the
        activity counters."""
        width = len(self._cpu_fields)
        if self._proc:
            return self._proc.cpu(width)
        per_core = psutil.cpu_times(percpu=True)
        return [core[:width] for core in per_core], psutil.cpu_stats()

    def _read_memory(self) -> tuple[Memory, tuple[int, int] | None]:
        """Memory and swap figures, and the bytes swapped in and out since boot
        (``None`` without swap space)."""
        if self._proc:
            memory = self._proc.memory()
            # Without swap space nothing can be swapped: /proc/vmstat, the largest file
            # a sample would read, is left alone until there is some.
            return memory, self._proc.swapped() if memory.swap_total else None
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
        current: Sequence[Sequence[float]],
        activity_before: Any,
        activity: Any,
        elapsed_s: float,
    ) -> Document:
        before, self._cpu_previous = self._cpu_previous, current
        cpu = cpu_utilisation(self._cpu_fields, before, current)
        load_1m, load_5m, load_15m = psutil.getloadavg()
        cpu["load"] = {"load_1m": load_1m, "load_5m": load_5m, "load_15m": load_15m}
        rates = counter_rates(activity_before, activity, elapsed_s)
        cpu["activity"] = {
            "ctx_switches_per_s": rates[0],
            "interrupts_per_s": rates[1],
            "soft_interrupts_per_s": rates[2],
        }
        # Linux does not count system calls: psutil reports 0 there.
        if activity.syscalls:
            cpu["activity"]["syscalls_per_s"] = rates[3]
        return cpu

    def _unless_absent(self, read: Callable[[], T | None], taken_at: float) -> T | None:
        # A family found is read every sample; one found missing is looked for once a minute.
        if taken_at < self._absent_until.get(read, -math.inf):
            return None
        found = read()
        if found is None:
            self._absent_until[read] = taken_at + ABSENT_RECHECK_S
        return found

    def _disk_usage(self, taken_at: float) -> list[Document]:
        if taken_at - self._mounts_read_at >= MOUNTS_REFRESH_S:
            self._mounts = real_mounts()
            self._mounts_read_at = taken_at
        return disk_usage(self._mounts)


def present(pairs: Iterable[tuple[str, Any]]) -> Document:
    """A group of the document from (field, value) pairs in field order: a ``None``
    value is absent, not null."""
    return {key: value for key, value in pairs if value is not None}


def cpu_utilisation(
    fields: Sequence[str], before: Sequence[Sequence[float]], current: Sequence[Sequence[float]]
) -> Document:
    """``percent``, ``per_core_percent`` and ``times`` of the cpu group from two readings
    of each core's CPU times (the ``fields``, in any unit).

    Where no clock tick passed between the readings the CPU was not measured:
    the percentages are 0 and ``times`` is absent (no split adds up to 100).
    """
    idle = [i for i, name in enumerate(fields) if name in _CPU_IDLE_FIELDS]
    # One read of the per-core times gives both the per-core and the total figures.
    shares = time_shares(
        [sum(column) for column in zip(*before, strict=True)],
        [sum(column) for column in zip(*current, strict=True)],
    )
    cpu: Document = {
        "percent": busy_share(shares, idle),
        "per_core_percent": [
            busy_share(time_shares(old, new), idle)
            for old, new in zip(before, current, strict=True)
        ],
    }
    if shares is not None:
        cpu["times"] = cpu_times_split(dict(zip(fields, shares, strict=True)))
    return cpu


def cpu_times_split(shares: dict[str, float]) -> Document:
    """Five shares that add up to 100: ``user`` includes ``nice``, ``system`` includes
    hard and soft interrupts; ``iowait`` and ``steal`` only where the platform has them."""
    return present(
        (
            ("user_percent", min(100.0, shares.get("user", 0.0) + shares.get("nice", 0.0))),
            (
                "system_percent",
                min(
                    100.0,
                    shares.get("system", 0.0) + shares.get("irq", 0.0) + shares.get("softirq", 0.0),
                ),
            ),
            ("idle_percent", shares.get("idle", 0.0)),
            ("iowait_percent", shares.get("iowait")),
            ("steal_percent", shares.get("steal")),
        )
    )


def network_metrics(
    previous: dict[str, Any] | None, current: dict[str, Any], elapsed_s: float
) -> Document:
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
        interfaces.append(dict(zip(_INTERFACE_KEYS, (name, *rates), strict=True)))
        sent += now.bytes_sent
        recv += now.bytes_recv
        sent_delta += counter_delta(before.bytes_sent if before else None, now.bytes_sent)
        recv_delta += counter_delta(before.bytes_recv if before else None, now.bytes_recv)
    totals = [sum(column) for column in zip(*all_rates, strict=True)] or [0.0] * 8
    network: Document = {
        "bytes_sent": sent,
        "bytes_recv": recv,
        "bytes_sent_delta": sent_delta,
        "bytes_recv_delta": recv_delta,
        **dict(zip(_INTERFACE_KEYS[1:], totals, strict=True)),
    }
    if interfaces:
        network["interfaces"] = interfaces
    return network


def _disk_io_counters(proc: ProcFiles | None = None) -> dict[str, DiskCounters]:
    try:
        if proc:
            return proc.disks(skip=PSEUDO_BLOCK_DEVICES)
        counters = psutil.disk_io_counters(perdisk=True) or {}
    except (RuntimeError, OSError):
        # Containers and some VMs expose no block device statistics at all.
        return {}
    return {
        name: DiskCounters(
            c.read_bytes, c.write_bytes, c.read_count, c.write_count, getattr(c, "busy_time", None)
        )
        for name, c in counters.items()
        if not name.startswith(PSEUDO_BLOCK_DEVICES)
    }


def disk_io(
    previous: dict[str, DiskCounters] | None, current: dict[str, DiskCounters], elapsed_s: float
) -> list[Document] | None:
    """Rates of each block device; ``None`` where the platform reports none."""
    devices = []
    for name, now in current.items():
        before = previous.get(name) if previous else None
        rates = counter_rates(before[:4] if before else None, now[:4], elapsed_s)
        device = dict(zip(_DISK_KEYS, (name, *rates), strict=True))
        if now.busy_time is not None:
            device["busy_percent"] = busy_percent(
                before.busy_time if before else None, now.busy_time, elapsed_s
            )
        devices.append(device)
    return devices or None


def real_mounts() -> list[Any]:
    """Mounted filesystems that hold data, once per mount point."""
    seen: dict[str, Any] = {}
    for part in psutil.disk_partitions(all=False):
        if part.fstype not in PSEUDO_FILESYSTEMS and part.mountpoint not in seen:
            seen[part.mountpoint] = part
    return list(seen.values())


def disk_usage(mounts: Sequence[Any] | None = None) -> list[Document]:
    """Usage of each real mounted filesystem (``mounts``: from :func:`real_mounts`)."""
    usages = []
    for part in real_mounts() if mounts is None else mounts:
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            # Unmounted since listed, or not ours to read: nothing to report.
            continue
        usages.append(
            present(
                (
                    ("mountpoint", part.mountpoint),
                    ("total_bytes", usage.total),
                    ("used_bytes", usage.used),
                    ("free_bytes", usage.free),
                    ("percent", float(usage.percent)),
                    ("device", part.device or None),
                    ("fstype", part.fstype or None),
                )
            )
        )
    return usages


def _finite(value: float | None) -> float | None:
    # Sensors report NaN or absurd values when unplugged; one bad figure must not
    # get the whole sample rejected downstream.
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def temperatures() -> list[Document] | None:
    """Every temperature sensor psutil finds, degrees Celsius; ``None`` without any."""
    read = getattr(psutil, "sensors_temperatures", None)
    return temperatures_of(read() if read else {})


def temperatures_of(sensors: dict[str, list[Any]]) -> list[Document] | None:
    """The temperatures group from psutil's ``sensors_temperatures()``."""
    readings = [
        present(
            (
                ("sensor", sensor),
                ("label", entry.label or str(position)),
                ("current_celsius", current),
                ("high_celsius", _finite(entry.high)),
                ("critical_celsius", _finite(entry.critical)),
            )
        )
        for sensor, entries in sensors.items()
        for position, entry in enumerate(entries)
        if (current := _finite(entry.current)) is not None
    ]
    return readings or None


def fans() -> list[Document] | None:
    """Every fan psutil finds, RPM; ``None`` without any."""
    read = getattr(psutil, "sensors_fans", None)
    return fans_of(read() if read else {})


def fans_of(sensors: dict[str, list[Any]]) -> list[Document] | None:
    """The fans group from psutil's ``sensors_fans()``."""
    found = [
        {"sensor": sensor, "label": entry.label or str(position), "speed_rpm": int(entry.current)}
        for sensor, entries in sensors.items()
        for position, entry in enumerate(entries)
    ]
    return found or None


def battery() -> Document | None:
    """The battery's charge, power source and time left; ``None`` without a battery."""
    read = getattr(psutil, "sensors_battery", None)
    return battery_of(read() if read else None)


def battery_of(state: Any) -> Document | None:
    """The battery group from psutil's ``sbattery`` (``None``: no battery)."""
    if state is None:
        return None
    # psutil's POWER_TIME_UNKNOWN (-1) and POWER_TIME_UNLIMITED (-2) are not durations.
    time_left_s = float(state.secsleft) if state.secsleft >= 0 else None
    return present(
        (
            ("percent", max(0.0, min(100.0, float(state.percent)))),
            ("plugged", state.power_plugged),
            ("time_left_s", None if state.power_plugged else time_left_s),
        )
    )
