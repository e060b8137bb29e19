"""An in-memory sink: the contract's reference, for tests and dry runs."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic

from sinks.base import RowT, Sink


class ListSink(Sink[RowT], Generic[RowT]):
    """Keeps flushed rows in :attr:`rows`, the first of each key, as the real sinks do."""

    def __init__(self, key: Callable[[RowT], Hashable]) -> None:
        self.rows: list[RowT] = []
        self.closed = False
        self._key = key
        self._seen: set[Hashable] = set()
        self._pending: list[RowT] = []

    async def write(self, rows: Sequence[RowT]) -> None:
        if self.closed:
            raise RuntimeError("write to a closed sink")
        self._pending.extend(rows)

    async def discard(self) -> None:
        self._pending.clear()

    async def flush(self) -> None:
        for row in self._pending:
            key = self._key(row)
            if key not in self._seen:
                self._seen.add(key)
                self.rows.append(row)
                self.rows_written += 1
        self._pending.clear()

    async def close(self) -> None:
        await self.flush()
        self.closed = True
