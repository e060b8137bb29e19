"""Valid sample documents for unit tests, built as a producer in another language would."""

from __future__ import annotations

import uuid
from typing import Any


def sample_document(**overrides: Any) -> dict[str, Any]:
    """A valid schema-1 sample as a plain dict; ``overrides`` replace top-level fields."""
    document: dict[str, Any] = {
        "schema_version": 1,
        "event_id": uuid.uuid4().hex,
        "host_id": "db-1",
        "hostname": "db-1.example",
        "timestamp": "2026-11-23T19:00:00.000000Z",
        "interval_s": 10.0,
        "cpu": {"percent": 42.5, "per_core_percent": [40.0, 45.0]},
        "memory": {
            "total_bytes": 16_000,
            "available_bytes": 6_000,
            "used_bytes": 10_000,
            "percent": 62.5,
        },
        "disks": [
            {
                "mountpoint": "/",
                "total_bytes": 1000,
                "used_bytes": 250,
                "free_bytes": 750,
                "percent": 25.0,
            },
            {
                "mountpoint": "/data",
                "total_bytes": 3000,
                "used_bytes": 2700,
                "free_bytes": 300,
                "percent": 90.0,
            },
        ],
        "network": {
            "bytes_sent": 5_000,
            "bytes_recv": 9_000,
            "bytes_sent_delta": 125,
            "bytes_recv_delta": 300,
            "bytes_sent_per_s": 12.5,
            "bytes_recv_per_s": 30.0,
        },
    }
    document.update(overrides)
    return document


def full_document() -> dict[str, Any]:
    """A valid sample with every optional group and field of schema 1 present."""
    document = sample_document(elapsed_s=10.0)
    document["cpu"].update(
        times={
            "user_percent": 30.0,
            "system_percent": 10.0,
            "idle_percent": 55.0,
            "iowait_percent": 4.0,
            "steal_percent": 1.0,
        },
        load={"load_1m": 0.5, "load_5m": 0.4, "load_15m": 0.3},
        activity={
            "ctx_switches_per_s": 900.0,
            "interrupts_per_s": 400.0,
            "soft_interrupts_per_s": 100.0,
            "syscalls_per_s": 0.0,
        },
    )
    document["memory"]["swap"] = {
        "total_bytes": 2000,
        "used_bytes": 100,
        "percent": 5.0,
        "swapped_in_bytes_per_s": 0.0,
        "swapped_out_bytes_per_s": 1.5,
    }
    document["disks"][0].update(device="/dev/sda1", fstype="ext4")
    document["network"].update(
        packets_sent_per_s=3.0,
        packets_recv_per_s=4.0,
        errors_in_per_s=0.0,
        errors_out_per_s=0.0,
        drops_in_per_s=0.0,
        drops_out_per_s=0.0,
        interfaces=[
            {
                "interface": "eth0",
                "bytes_sent_per_s": 12.5,
                "bytes_recv_per_s": 30.0,
                "packets_sent_per_s": 3.0,
                "packets_recv_per_s": 4.0,
                "errors_in_per_s": 0.0,
                "errors_out_per_s": 0.0,
                "drops_in_per_s": 0.0,
                "drops_out_per_s": 0.0,
            }
        ],
    )
    document.update(
        disk_io=[
            {
                "device": "sda",
                "read_bytes_per_s": 10.0,
                "write_bytes_per_s": 20.0,
                "reads_per_s": 1.0,
                "writes_per_s": 2.0,
                "busy_percent": 3.0,
            }
        ],
        temperatures=[
            {
                "sensor": "coretemp",
                "label": "Package",
                "current_celsius": -5.0,
                "high_celsius": 80.0,
                "critical_celsius": 100.0,
            }
        ],
        fans=[{"sensor": "thinkpad", "label": "fan1", "speed_rpm": 2000}],
        battery={"percent": 80.0, "plugged": True, "time_left_s": 60.0},
        gpus=[
            {
                "index": 0,
                "name": "A100",
                "uuid": "GPU-1",
                "utilization_percent": 50.0,
                "memory_used_bytes": 10,
                "memory_total_bytes": 20,
                "temperature_celsius": 60.0,
                "power_watts": 100.0,
                "power_limit_watts": 300.0,
            }
        ],
        host={
            "os": "Linux",
            "os_version": "Debian 12",
            "kernel": "6.1",
            "architecture": "x86_64",
            "cpu_model": "Xeon",
            "cpu_cores_logical": 8,
            "boot_time": "2026-11-23T00:00:00Z",
            "uptime_s": 100.0,
            "cpu_cores_physical": 4,
        },
        tags=[{"key": "env", "value": "prod"}],
        collector={"spooled_samples": 0, "dropped_samples": 0},
    )
    return document
