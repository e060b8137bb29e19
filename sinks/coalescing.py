"""A sink that keeps only the newest row per key until it is flushed.

Gold writes the row of every window a batch touched; a window open for an hour is
touched by hundreds of batches. Coalesced, PostgreSQL sees its newest row once per
checkpoint instead of once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic

from sinks.base import RowT, Sink


class CoalescingSink(Sink[RowT], Generic[RowT]):
    """Holds the newest row of each ``key`` and writes them to ``inner`` at :meth:`flush`."""

    def __init__(self, inner: Sink[RowT], key: Callable[[RowT], Hashable]) -> None:
        self.inner = inner
        self._key = key
        self._rows: dict[Hashable, RowT] = {}

    async def write(self, rows: Sequence[RowT]) -> None:
        for row in rows:
            self._rows[self._key(row)] = row

    async def flush(self) -> None:
        # Taken before the write awaits: rows held meanwhile wait for the next flush.
        rows, self._rows = self._rows, {}
        if rows:
            await self.inner.write(list(rows.values()))
        await self.inner.flush()
        self.rows_written = self.inner.rows_written

    async def discard(self) -> None:
        self._rows = {}
        await self.inner.discard()

    async def close(self) -> None:
        await self.flush()
        await self.inner.close()
