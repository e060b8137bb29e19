"""Linux's /proc files a sample reads, kept open and re-read in one call each.

psutil opens, reads and closes these files once per function, and reads
/proc/meminfo twice (memory, then swap) and /proc/stat twice (CPU times, then
activity): most of a sample's system calls and much of its CPU time. Here each
file is opened once and re-read from offset 0 with ``pread``, and parsed into
the same figures psutil gives (its formulas, copied;
``tests/unit/test_collector.py`` compares the two).
Other platforms, or a kernel without these files, keep using psutil.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

_CHUNK = 64 * 1024
_SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size


class CpuStats(NamedTuple):
    """psutil's ``scpustats``: cumulative counters of the whole system."""

    ctx_switches: int
    interrupts: int
    soft_interrupts: int
    syscalls: int


class NetCounters(NamedTuple):
    """psutil's ``snetio``: cumulative counters of one interface."""

    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int


class DiskCounters(NamedTuple):
    """The part of psutil's ``sdiskio`` that a sample reports, in the sample's order."""

    read_bytes: int
    write_bytes: int
    read_count: int
    write_count: int
    busy_time: int | None
    """Milliseconds with I/O in flight; ``None`` where psutil does not report it."""


class Memory(NamedTuple):
    """The part of psutil's ``svmem`` and ``sswap`` that a sample reports."""

    total: int
    available: int
    used: int
    percent: float
    swap_total: int
    swap_used: int
    swap_percent: float


class ProcFiles:
    """Open file descriptors on the /proc files a sample reads."""

    def __init__(self, stat: int, meminfo: int, vmstat: int, net: int, disks: int) -> None:
        self._stat = stat
        self._meminfo = meminfo
        self._vmstat = vmstat
        self._net = net
        self._disks = disks

    @classmethod
    def open(cls, root: str = "/proc") -> ProcFiles | None:
        """The files under ``root``; ``None`` off Linux or when one is missing or
        lacks a figure (then psutil, which knows the older layouts, does the reading)."""
        if not sys.platform.startswith("linux"):
            return None
        fds: list[int] = []
        try:
            for name in ("stat", "meminfo", "vmstat", "net/dev", "diskstats"):
                fds.append(os.open(f"{root}/{name}", os.O_RDONLY | os.O_CLOEXEC))
            files = cls(*fds)
            files.cpu(1)
            files.memory()
            files.swapped()
            files.net()
            files.disks()
        except (OSError, ValueError, KeyError, IndexError):
            for fd in fds:
                os.close(fd)
            return None
        return files

    def close(self) -> None:
        for fd in (self._stat, self._meminfo, self._vmstat, self._net, self._disks):
            os.close(fd)

    def cpu(self, fields: int) -> tuple[list[list[int]], CpuStats]:
        """Each core's first ``fields`` CPU times (clock ticks, psutil's order), and the
        activity counters, from one read of /proc/stat.

        Ticks, not psutil's seconds: only their ratios are used, and integers need
        no division per value."""
        cores = []
        ctx = interrupts = soft = 0
        for line in _read(self._stat).split(b"\n"):
            if line.startswith(b"cpu"):
                if line[3:4] != b" ":  # "cpu " is the total of all cores
                    values = line.split()
                    cores.append(list(map(int, values[1 : fields + 1])))
            elif line.startswith(b"ctxt "):
                ctx = int(line.split(None, 2)[1])
            elif line.startswith(b"intr "):
                interrupts = int(line.split(None, 2)[1])
            elif line.startswith(b"softirq "):
                soft = int(line.split(None, 2)[1])
        if not cores:
            raise ValueError("/proc/stat lists no CPU")
        return cores, CpuStats(ctx, interrupts, soft, 0)

    def memory(self) -> Memory:
        """Memory and swap as psutil's ``virtual_memory`` and ``swap_memory`` compute them."""
        data = b"\n" + _read(self._meminfo)
        total = _kib(data, b"\nMemTotal:") * 1024
        # Since Linux 3.14; on older kernels open() fails and psutil estimates it.
        available = _kib(data, b"\nMemAvailable:") * 1024
        if available <= 0:
            raise ValueError("MemAvailable is not reported")
        if available > total:
            available = _kib(data, b"\nMemFree:") * 1024
        swap_total = _kib(data, b"\nSwapTotal:") * 1024
        swap_used = swap_total - _kib(data, b"\nSwapFree:") * 1024
        return Memory(
            total=total,
            available=available,
            used=total - available,
            percent=_percent(total - available, total),
            swap_total=swap_total,
            swap_used=swap_used,
            swap_percent=_percent(swap_used, swap_total),
        )

    def swapped(self) -> tuple[int, int]:
        """Bytes swapped in and out since boot (psutil's ``sin``, ``sout``)."""
        data = _read(self._vmstat)
        return _vmstat_pages(data, b"\npswpin ") * 4096, _vmstat_pages(data, b"\npswpout ") * 4096

    def net(self) -> dict[str, NetCounters]:
        """psutil's ``net_io_counters(pernic=True)``: each interface's counters."""
        interfaces = {}
        for line in _read(self._net).split(b"\n")[2:]:
            name, colon, rest = line.rpartition(b":")
            if not colon:
                continue
            v = rest.split()
            interfaces[name.strip().decode()] = NetCounters(
                int(v[8]), int(v[0]), int(v[9]), int(v[1]), int(v[2]), int(v[10]), int(v[3]),
                int(v[11])
            )  # fmt: skip
        return interfaces

    def disks(self, skip: tuple[str, ...] = ()) -> dict[str, DiskCounters]:
        """psutil's ``disk_io_counters(perdisk=True)``: each block device's counters,
        but for devices whose names start with one of ``skip`` (left unparsed)."""
        skipped = tuple(prefix.encode() for prefix in skip)
        devices = {}
        for line in _read(self._disks).split(b"\n"):
            head = line.split(None, 3)
            if not head:
                continue
            if len(head) < 4:
                raise ValueError(f"unknown /proc/diskstats line {line!r}")
            if head[2].startswith(skipped):
                continue
            v = head[3].split()  # the fields after major, minor and name
            if len(v) == 11 or len(v) >= 15:  # Linux 2.6+: a disk, or any device since 4.18
                counters = DiskCounters(
                    int(v[2]) * _SECTOR, int(v[6]) * _SECTOR, int(v[0]), int(v[4]), int(v[9])
                )
            elif len(v) == 4:  # a partition, before Linux 4.18
                counters = DiskCounters(
                    int(v[1]) * _SECTOR, int(v[3]) * _SECTOR, int(v[0]), int(v[2]), 0
                )
            else:  # Linux 2.4's layout: psutil reads it
                raise ValueError(f"unknown /proc/diskstats line {line!r}")
            devices[head[2].decode()] = counters
        return devices


def _read(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _kib(data: bytes, key: bytes) -> int:
    # "MemTotal:       16303656 kB": the one number after the key (index raises when absent).
    start = data.index(key) + len(key)
    return int(data[start : data.index(b"k", start)])


def _vmstat_pages(data: bytes, key: bytes) -> int:
    # psutil multiplies by 4 KiB whatever the page size: so do we, to report the same.
    start = data.index(key) + len(key)
    end = data.find(b"\n", start)
    return int(data[start : end if end >= 0 else None])


def _percent(used: int, total: int) -> float:
    return round(used / total * 100, 1) if total else 0.0
