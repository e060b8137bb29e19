"""The gold windowed tables: one tumbling table per window size, keyed by host.

Keys are (host, (window start, window end)) and values encoded
:class:`~schemas.windows.WindowAggregate` objects, both stored as JSON. The tables
live in RocksDB (``HOSTSTREAM_STORE``) with a Kafka changelog, are partitioned
like the metrics topic (a host's windows live with the worker that owns the
host's partition), and keep a window for ``HOSTSTREAM_GOLD_RETENTION_S``.
"""

from __future__ import annotations

from typing import Any

from app.core import app, settings
from schemas.windows import WINDOW_SIZES_S

gold_windows: dict[str, Any] = {
    name: app.Table(
        f"gold_{name}",
        partitions=settings.topic_partitions,
    ).tumbling(size_s, expires=settings.gold_retention_s)
    for name, size_s in WINDOW_SIZES_S.items()
}
"""Window name (``5min``, ``1h``) -> Faust WindowWrapper over the windowed table."""

host_watermarks: Any = app.Table(
    "host_watermarks",
    partitions=settings.topic_partitions,
)
"""Host id -> :class:`~schemas.windows.Watermark` as a dict: how far gold got per host."""
