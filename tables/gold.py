"""The gold windowed tables: one tumbling table per window size, keyed by host.

Keys are (host, (window start, window end)) and values encoded
:class:`~schemas.windows.WindowAggregate` objects, both stored as JSON. The tables
live in RocksDB (``HOSTSTREAM_STORE``) with a Kafka changelog, are partitioned
like the metrics topic (a host's windows live with the worker that owns the
host's partition), and keep a window for ``HOSTSTREAM_GOLD_RETENTION_S``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import FutureMessage

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


@dataclass(frozen=True)
class GoldTables:
    """The tables gold keeps, registered with a Faust app by :meth:`add_to`."""

    windows: dict[str, Any]
    """Window name (``5min``, ``1h``) -> Faust WindowWrapper over the windowed table, whose
    values are encoded :class:`~schemas.windows.WindowAggregate` objects."""
    watermarks: Any
    """Host id -> :class:`~schemas.windows.Watermark` as a dict: how far gold got per host."""

    @classmethod
    def add_to(cls, app: faust.App, partitions: int, retention_s: float) -> GoldTables:
        windows = {
            name: app.tables.add(
                ChangelogAwaitedTable(
                    app, name=f"gold_{name}", beacon=app.tables.beacon, partitions=partitions
                )
            ).tumbling(size_s, expires=retention_s)
            for name, size_s in WINDOW_SIZES_S.items()
        }
        return cls(windows=windows, watermarks=app.Table("host_watermarks", partitions=partitions))

    @property
    def all(self) -> list[Any]:
        """Every table (not window wrapper), for what concerns them all."""
        return [*(w.table for w in self.windows.values()), self.watermarks]

    async def windows_written(self) -> None:
        """Wait until Kafka holds the changelog records of every window write so far."""
        await asyncio.gather(*(w.table.changelog_written() for w in self.windows.values()))
