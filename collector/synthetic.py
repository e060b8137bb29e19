"""Synthetic samples for load tests and benchmarks: valid records of made-up hosts.

Values are drawn from a seeded generator, so a run is repeatable; network
counters grow by the drawn deltas, as a real host's do.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

from schemas.metrics import SCHEMA_VERSION, utc_timestamp

_GIB = 2**30


def synthetic_document(
    host_id: str, moment: datetime, rng: random.Random, interval_s: float = 10.0
) -> dict[str, Any]:
    """One valid sample of ``host_id`` taken at ``moment`` (aware), as a JSON-ready dict."""
    cpu = round(rng.uniform(0, 100), 2)
    memory = round(rng.uniform(5, 95), 2)
    total = 64 * _GIB
    used = int(total * memory / 100)
    disk = round(rng.uniform(10, 80), 2)
    sent, recv = rng.randrange(0, 10**7), rng.randrange(0, 10**8)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "host_id": host_id,
        "hostname": host_id,
        "timestamp": utc_timestamp(moment),
        "interval_s": interval_s,
        "cpu": {"percent": cpu, "per_core_percent": [cpu, cpu]},
        "memory": {
            "total_bytes": total,
            "available_bytes": total - used,
            "used_bytes": used,
            "percent": memory,
        },
        "disks": [
            {
                "mountpoint": "/",
                "total_bytes": 500 * _GIB,
                "used_bytes": int(500 * _GIB * disk / 100),
                "free_bytes": 500 * _GIB - int(500 * _GIB * disk / 100),
                "percent": disk,
            }
        ],
        "network": {
            "bytes_sent": sent * 7,
            "bytes_recv": recv * 7,
            "bytes_sent_delta": sent,
            "bytes_recv_delta": recv,
            "bytes_sent_per_s": sent / interval_s,
            "bytes_recv_per_s": recv / interval_s,
        },
    }
