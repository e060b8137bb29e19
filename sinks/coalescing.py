"""A sink that keeps only the newest item per key, and builds rows of them when flushed.

Gold writes the row of every window a batch touched; a window open for an hour is
touched by hundreds of batches. Coalesced, PostgreSQL sees its newest row once per
checkpoint instead of once per batch, and the row (two quantiles of a sketch) is
computed then, once, not for every batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from sinks.base import RowT, Sink

ItemT = TypeVar("ItemT")


class CoalescingSink(Sink[ItemT], Generic[ItemT, RowT]):
    """Holds the newest item of each ``key``; at :meth:`flush` writes ``build(item)``
    of each to ``inner``."""

    def __init__(
        self,
        inner: Sink[RowT],
        key: Callable[[ItemT], Hashable],
        build: Callable[[ItemT], RowT],
    ) -> None:
        self.inner = inner
        self._key = key
        self._build = build
        self._items: dict[Hashable, ItemT] = {}

    async def write(self, rows: Sequence[ItemT]) -> None:
        for item in rows:
            self._items[self._key(item)] = item

    async def flush(self) -> None:
        # Taken before the write awaits: items held meanwhile wait for the next flush.
        items, self._items = self._items, {}
        if items:
            await self.inner.write([self._build(item) for item in items.values()])
        await self.inner.flush()
        self.rows_written = self.inner.rows_written

    async def discard(self) -> None:
        self._items = {}
        await self.inner.discard()

    async def close(self) -> None:
        await self.flush()
        await self.inner.close()
