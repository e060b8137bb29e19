"""The one place that decides when a batch's records may be committed.

As in Quix Streams' checkpointing: a batch that went through every stage waits
here until every sink has flushed what the stages wrote of it; only then are its
records acknowledged, so Faust commits their offsets after the rows are durable,
never before. A sink that buffers (gold's live rows) is flushed at most every
``interval_s``; one that writes at once flushes for free.

Each sink's flush is timed here, with the rows it stored since the previous one,
for ``/metrics``: this is where a checkpoint's time goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from runtime.batch import Batch
from sinks.base import Sink

log = logging.getLogger(__name__)


FlushObserver = Callable[[Sink[Any], int, float], None]
"""Told of each sink's flush: the sink, the rows it stored since its previous flush, and
the seconds the flush took."""


class Checkpoint:
    """Batches written by every stage, waiting for the sinks' next flush."""

    def __init__(
        self,
        sinks: Sequence[Sink[Any]],
        interval_s: float,
        on_flush: FlushObserver | None = None,
    ) -> None:
        self.sinks = tuple(sinks)
        self.interval_s = interval_s
        self.on_flush = on_flush
        self.committed_at: float | None = None
        """``time.monotonic()`` when batches were last acknowledged; None before."""
        self._rows_before = [sink.rows_written for sink in self.sinks]
        self._batches: list[Batch] = []
        self._since: float | None = None
        self._lock = asyncio.Lock()

    def add(self, batch: Batch) -> None:
        """``batch`` went through every stage: it is committed with the next flush."""
        self._batches.append(batch)
        if self._since is None:
            self._since = asyncio.get_running_loop().time()

    def due(self) -> bool:
        """Whether the oldest batch waiting has waited ``interval_s``."""
        return (
            self._since is not None
            and asyncio.get_running_loop().time() - self._since >= self.interval_s
        )

    async def commit(self) -> None:
        """Flush every sink, then finish the batches added before: their records are
        acknowledged. A failed flush fails them all (the worker exits and replays)."""
        async with self._lock:
            batches, self._batches, self._since = self._batches, [], None
            if not batches:
                return
            try:
                for n, sink in enumerate(self.sinks):
                    started = time.perf_counter()
                    await sink.flush()
                    self._flushed(n, time.perf_counter() - started)
            except Exception as exc:
                for batch in batches:
                    batch.finish(exc)
                return
            self.committed_at = time.monotonic()
            for batch in batches:
                batch.finish()

    def _flushed(self, n: int, seconds: float) -> None:
        sink = self.sinks[n]
        rows, self._rows_before[n] = sink.rows_written - self._rows_before[n], sink.rows_written
        if self.on_flush is not None:
            self.on_flush(sink, rows, seconds)

    async def commit_if_due(self) -> None:
        if self.due():
            await self.commit()

    async def drop(self) -> None:
        """Give up the batches waiting and the sinks' unflushed rows: after a rebalance
        their partitions may be another worker's, whose newer rows these must not
        overwrite. The batches are read again from the committed offsets."""
        batches, self._batches, self._since = self._batches, [], None
        for batch in batches:
            batch.abandon()
        for sink in self.sinks:
            await sink.discard()
        if batches:
            log.info("rebalance: %d batches not yet committed will be read again", len(batches))
