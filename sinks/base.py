"""The one contract every sink implements: PostgreSQL now, GCS and BigQuery next.

A stage hands a sink the rows of one batch of Kafka records; the pipeline's
checkpoint (runtime/checkpoint.py) flushes every sink and only then lets Faust
commit those records' offsets. Sinks must therefore be idempotent: after a crash
the same batch arrives again and must change nothing.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from schemas.validation import REASON_MAX_CHARS, bounded_reason

RowT = TypeVar("RowT")

__all__ = ["REASON_MAX_CHARS", "RefusedRow", "RowT", "RowsRefused", "Sink", "bounded_reason"]


@dataclass(frozen=True)
class RefusedRow:
    """A row a sink refused on its own account: what it holds, not the sink's state."""

    index: int
    """Position of the row in the sequence given to :meth:`Sink.write`."""
    reason: str
    """One line, at most :data:`REASON_MAX_CHARS` characters."""


class RowsRefused(Exception):
    """Raised by :meth:`Sink.write` once every row but ``refused`` is written.

    A refused row would be refused again on every retry (a NUL in text, a value out
    of the column's range, a key too long to index), so it must not hold up its
    batch: the caller sets those rows aside and goes on.
    """

    def __init__(self, sink: str, refused: Sequence[RefusedRow]) -> None:
        self.sink = sink
        self.refused = tuple(refused)
        first = self.refused[0]
        super().__init__(
            f"{sink} refused {len(self.refused)} row(s); the first, at {first.index}: "
            f"{first.reason}"
        )


class Sink(abc.ABC, Generic[RowT]):
    """Where rows end up. Use as ``async with sink:`` so it is always closed."""

    rows_written: int = 0
    """Rows the sink stored as new or replacing ones so far; a row it held already (a
    replay) is not counted. A sink that cannot tell counts every row it stored."""

    @abc.abstractmethod
    async def write(self, rows: Sequence[RowT]) -> None:
        """Accept a batch of rows; a sink may write them now or at :meth:`flush`.

        Raises :class:`RowsRefused` when rows were refused for their content, after
        writing all the others; waits out outages of the service it writes to.
        """

    @abc.abstractmethod
    async def flush(self) -> None:
        """Make every row accepted so far durable; returns only once it is."""

    async def discard(self) -> None:
        """Forget the rows accepted but not flushed: their records will be read again
        (partitions taken away at a rebalance). A sink that writes at :meth:`write`
        holds none."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush, then release connections. The sink is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
