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
    of each to ``inner``.

    The newest is the last written, unless ``replaces(new, held)`` says otherwise (a
    host's newest sample, when an older one may come later).
    """

    def __init__(
        self,
        inner: Sink[RowT],
        key: Callable[[ItemT], Hashable],
        build: Callable[[ItemT], RowT],
        replaces: Callable[[ItemT, ItemT], bool] | None = None,
    ) -> None:
        self.inner = inner
        self._key = key
        self._build = build
        self._replaces = replaces
        self._items: dict[Hashable, ItemT] = {}

    async def write(self, rows: Sequence[ItemT]) -> None:
        items, key, replaces = self._items, self._key, self._replaces
        if replaces is None:
            for item in rows:
                items[key(item)] = item
            return
        for item in rows:
            k = key(item)
            held = items.get(k)
            if held is None or replaces(item, held):
                items[k] = item

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
