"""Who this host is: a stable id for the Kafka key, and the facts that describe it.

The host id must survive reboots, renames and reinstalls of the collector, since
every table downstream is keyed by it; the hostname is reported beside it and
may change freely.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from schemas.metrics import utc_timestamp

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
_HOST_ID_FILE = "host-id"


def default_host_id(
    collector_dir: Path, machine_id_files: tuple[Path, ...] = MACHINE_ID_FILES
) -> str:
    """A stable id for this host: 32 lowercase hex digits.

    Derived from the systemd machine id when there is one, hashed with an
    application key as systemd asks (the raw machine id is meant to stay on the
    machine); otherwise a random id created once and kept in
    ``collector_dir/host-id``. Raises ``OSError`` when neither can be read or
    the id file cannot be written.
    """
    for path in machine_id_files:
        try:
            machine_id = path.read_text().strip()
        except OSError:
            continue
        if re.fullmatch(r"[0-9a-f]{32}", machine_id):
            return hashlib.sha256(f"hoststream:{machine_id}".encode()).hexdigest()[:32]
    id_file = collector_dir / _HOST_ID_FILE
    try:
        kept = id_file.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    collector_dir.mkdir(parents=True, exist_ok=True)
    new_id = uuid.uuid4().hex
    # Written aside then renamed, so a crash never leaves an empty id behind.
    partial = id_file.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(new_id + "\n")
    partial.replace(id_file)
    return new_id


def host_info(boot_time: float) -> dict[str, Any]:
    """What this host is, as the sample's ``host`` group (:class:`~schemas.metrics.HostInfo`);
    ``boot_time`` is epoch seconds. ``uptime_s`` is as of now: the sampler renews it."""
    physical = psutil.cpu_count(logical=False)
    return {
        "os": platform.system(),
        "os_version": _os_version(),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": psutil.cpu_count(logical=True) or 1,
        "boot_time": utc_timestamp(datetime.fromtimestamp(boot_time, UTC)),
        "uptime_s": max(0.0, time.time() - boot_time),
        **({"cpu_cores_physical": physical} if physical else {}),
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name (``AMD EPYC 7B13``), or the platform's processor string."""
    try:
        with cpuinfo.open() as lines:
            for line in lines:
                key, _, value = line.partition(":")
                # x86 says "model name"; ARM says "Processor", "Hardware" or nothing useful.
                if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _os_version() -> str:
    system = platform.system()
    if system == "Linux":
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
        except OSError:
            return "Linux"
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return platform.version()
