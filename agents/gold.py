"""The gold stage: 5-minute and hourly windows per host, in RocksDB and PostgreSQL."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from runtime.batch import Batch
from schemas.anomalies import GoldRow, Thresholds, gold_row
from schemas.rows import window_sample
from schemas.stats import PipelineStats
from schemas.windows import (
    WINDOW_SIZES_S,
    Watermark,
    WindowSample,
    decode,
    encode,
    expired_hosts,
    fold,
    judge,
    window_start,
)
from sinks.base import Sink
from tables.gold import GoldTables

log = logging.getLogger(__name__)

WATERMARK_SWEEP_INTERVAL_S = 60.0
"""How often gold looks for watermarks of hosts gone quiet (a scan of the table)."""


@dataclass(kw_only=True)
class AggregateWindows:
    """Folds each batch into the windowed tables, once per (host, window), and writes the
    rows of the windows it touched to ``gold.perf_5min_summary`` and
    ``gold.perf_1h_summary`` (sinks that keep a window's newest row until the
    checkpoint flushes them)."""

    name: ClassVar[str] = "aggregate_windows"

    tables: GoldTables
    sinks: dict[str, Sink[GoldRow]]
    tables_ready: Callable[[], Awaitable[None]]
    """Returns once the tables may be written (their changelogs' metadata is known)."""
    thresholds: Thresholds
    grace_s: float
    retention_s: float
    stats: PipelineStats
    _swept_at: float = field(default=-math.inf, init=False)

    async def start(self) -> None:
        await self.tables_ready()

    async def process(self, batch: Batch) -> None:
        windows, watermarks = self._fold_batch(batch)
        # The watermarks go to their changelog only once the windows' changelog records
        # are in Kafka: the two tables' changelogs are different topics, and a table
        # restored from them must never have a watermark claiming samples its windows
        # lack (gold would skip those samples as replays).
        await self.tables.windows_written()
        self._store_watermarks(batch, watermarks)
        self._expire_watermarks(batch)
        for name, rows in windows.items():
            await self.sinks[name].write(rows)
        batch.samples = []  # folded: only its records' offsets are still needed

    def _fold_batch(self, batch: Batch) -> tuple[dict[str, list[GoldRow]], dict[str, Watermark]]:
        """Fold the batch into the windowed tables; return the rows of the windows it
        touched, by window name, and its hosts' new watermarks (not stored yet)."""
        samples = [window_sample(row) for row in batch.samples]
        partitions = {s.host_id: s.partition for s in samples}
        marks = {}
        for host, partition in partitions.items():
            with batch.on_partition(partition):
                stored = self.tables.watermarks.get(host)
            if stored is not None:
                marks[host] = Watermark(**stored)
        judged = judge(samples, marks, self.grace_s)
        for late, name in judged.late:
            self.stats.late_samples += 1
            log.warning(
                "late sample of %s (partition %d, offset %d, at %s): its %s window had closed; "
                "in silver, not in gold",
                late.host_id,
                late.partition,
                late.offset,
                datetime.fromtimestamp(late.sample_time_s, tz=UTC).isoformat(),
                name,
            )
        rows = {
            name: self._fold_windows(batch, judged.on_time[name], judged.replayed, name, size_s)
            for name, size_s in WINDOW_SIZES_S.items()
        }
        return rows, judged.watermarks

    def _store_watermarks(self, batch: Batch, watermarks: dict[str, Watermark]) -> None:
        for host, mark in watermarks.items():
            with batch.on_partition(mark.partition):
                self.tables.watermarks[host] = asdict(mark)

    def _expire_watermarks(self, batch: Batch) -> None:
        """Delete the watermarks of hosts whose windows have all expired, on the
        partitions of ``batch`` (a table deletes through an event of its partition)."""
        now = time.monotonic()
        if now - self._swept_at < WATERMARK_SWEEP_INTERVAL_S:
            return
        self._swept_at = now
        partitions = {r.partition for r in batch.records}
        marks = {
            host: Watermark(**stored)
            for host, stored in self.tables.watermarks.items()
            if stored["partition"] in partitions
        }
        expired = expired_hosts(marks, self.retention_s)
        for host in expired:
            with batch.on_partition(marks[host].partition):
                del self.tables.watermarks[host]
        if expired:
            log.info("forgot the watermarks of %d hosts whose windows expired", len(expired))

    def _fold_windows(
        self,
        batch: Batch,
        samples: list[WindowSample],
        replayed: list[WindowSample],
        name: str,
        size_s: int,
    ) -> list[GoldRow]:
        """Merge on-time samples into their windows; return the rows of every window the
        batch touched. A replayed sample's window is written again as stored: a crash
        between the table write and the PostgreSQL upsert must not leave the row behind."""
        groups: dict[tuple[str, int], list[WindowSample]] = {}
        for s in replayed:
            groups.setdefault((s.host_id, window_start(s.sample_time_s, size_s)), [])
        for s in samples:
            groups.setdefault((s.host_id, window_start(s.sample_time_s, size_s)), []).append(s)
        partitions = {s.host_id: s.partition for s in (*replayed, *samples)}
        table = self.tables.windows[name].table
        rows = []
        for (host, start), group in groups.items():
            key = (host, table.window.ranges(start)[0])
            with batch.on_partition(partitions[host]):
                stored = table.get(key)
                current = decode(stored) if stored is not None else None
                merged = fold(current, group)
                if merged is not None:
                    table[key] = encode(merged)
            latest = merged or current
            if latest is not None:
                rows.append(gold_row(host, start, size_s, latest, self.thresholds))
        return rows


@dataclass
class FinalizeWindows:
    """Marks final the gold rows of windows that closed and settled (a leader's timer)."""

    finalize: Callable[[float, float], Awaitable[int]]
    """(grace_s, settle_s) -> how many rows it marked final."""
    grace_s: float
    every_s: float

    async def __call__(self) -> None:
        marked = await self.finalize(self.grace_s, self.every_s)
        if marked:
            log.info("marked %d gold windows final", marked)
