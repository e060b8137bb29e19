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
