"""The gold windowed tables: one tumbling table per window size, keyed by host.

Keys are (host, (window start, window end)) and values encoded
:class:`~schemas.windows.WindowAggregate` objects, both stored as JSON. The tables
live in RocksDB (``HOSTSTREAM_STORE``) with a Kafka changelog, are partitioned
like the metrics topic (a host's windows live with the worker that owns the
host's partition), and keep a window for ``HOSTSTREAM_GOLD_RETENTION_S``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import FutureMessage

from app.core import app, settings
from schemas.windows import WINDOW_SIZES_S


class ChangelogAwaitedTable(faust.Table):
    """A table whose writes can be awaited until their changelog records are in Kafka.

    ``app.producer.flush()`` does not promise that: its buffer gives up after 0.1 s
    without a message sent, and a message taken off the buffer but not yet handed to
    aiokafka is not waited for. Each write's own future resolves when Kafka has
    acknowledged its record.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unacknowledged: list[FutureMessage] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        sent: FutureMessage = super().send_changelog(*args, **kwargs)
        self._unacknowledged.append(sent)
        return sent

    async def changelog_written(self) -> None:
        """Wait until Kafka holds the changelog records of every write made so far;
        raises if one could not be sent."""
        sent, self._unacknowledged = self._unacknowledged, []
        await asyncio.gather(*sent)


gold_windows: dict[str, Any] = {
    name: app.tables.add(
        ChangelogAwaitedTable(
            app,
            name=f"gold_{name}",
            beacon=app.tables.beacon,
            partitions=settings.topic_partitions,
        )
    ).tumbling(size_s, expires=settings.gold_retention_s)
    for name, size_s in WINDOW_SIZES_S.items()
}
"""Window name (``5min``, ``1h``) -> Faust WindowWrapper over the windowed table."""

host_watermarks: Any = app.Table(
    "host_watermarks",
    partitions=settings.topic_partitions,
)
"""Host id -> :class:`~schemas.windows.Watermark` as a dict: how far gold got per host."""
