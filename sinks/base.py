"""The one contract every sink implements: PostgreSQL now, GCS and BigQuery next.

An agent hands a sink the rows of one batch of Kafka events, then flushes it,
and only then lets Faust commit those events' offsets. Sinks must therefore be
idempotent: after a crash the same batch arrives again and must change nothing.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Generic, Self, TypeVar

RowT = TypeVar("RowT")


class Sink(abc.ABC, Generic[RowT]):
    """Where rows end up. Use as ``async with sink:`` so it is always closed."""

    @abc.abstractmethod
    async def write(self, rows: Sequence[RowT]) -> None:
        """Accept a batch of rows; a sink may write them now or at :meth:`flush`."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Make every row accepted so far durable; returns only once it is."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush, then release connections. The sink is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
