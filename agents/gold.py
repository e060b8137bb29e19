"""The gold stage: 5-minute and hourly windows per host, in RocksDB and PostgreSQL."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from runtime.batch import Batch
from schemas.anomalies import GoldWindow
from schemas.rows import KafkaRecord, window_sample
from schemas.stats import PipelineStats
from schemas.windows import (
    WINDOW_SIZES_S,
    Watermark,
    WindowSample,
    advance,
    close_windows,
    expired_hosts,
    forget_flushed,
)
from sinks.base import Sink
from tables.gold import HostStates, HostUpdate

log = logging.getLogger(__name__)

EXPIRY_SWEEP_INTERVAL_S = 60.0
"""How often gold looks for hosts gone quiet (a scan of the table)."""


@dataclass(kw_only=True)
class AggregateWindows:
    """Folds each batch into its hosts' states (watermark and open windows) and writes
    the rows of the windows it touched to ``gold.perf_5min_summary`` and
    ``gold.perf_1h_summary`` (sinks that keep a window's newest row until the
    checkpoint flushes them); the states go to their table at the same checkpoint."""

    name: ClassVar[str] = "aggregate_windows"

    states: HostStates
    sinks: dict[str, Sink[GoldWindow]]
    """Window name -> where the windows a batch touched go (their rows are built there)."""
    tables_ready: Callable[[], Awaitable[None]]
    """Returns once the table may be written (its changelog's metadata is known)."""
    grace_s: float
    retention_s: float
    stats: PipelineStats
    _acknowledged: dict[int, int] = field(default_factory=dict, init=False)
    """Partition -> highest offset acknowledged: every sink flushed what came before."""
    _swept_at: float = field(default=-math.inf, init=False)

    async def start(self) -> None:
        await self.tables_ready()

    def acknowledged(self, records: Sequence[KafkaRecord]) -> None:
        """The checkpoint flushed every sink for ``records``."""
        for r in records:
            if r.offset > self._acknowledged.get(r.partition, -1):
                self._acknowledged[r.partition] = r.offset

    async def process(self, batch: Batch) -> None:
        by_host: dict[str, list[WindowSample]] = {}
        for row in batch.samples:
            s = window_sample(row)
            by_host.setdefault(s.host_id, []).append(s)
        updates: list[HostUpdate] = []
        windows: dict[str, list[GoldWindow]] = {name: [] for name in WINDOW_SIZES_S}
        for host, samples in by_host.items():
            partition = samples[0].partition
            done = advance(self.states.get(host, batch, partition), samples, self.grace_s)
            state = done.state
            self._log_late(done.late)
            for name, start in done.touched:
                window = state.windows.get((name, start))
                if window is not None:  # None: a replay of a window closed and flushed
                    windows[name].append(GoldWindow(host, start, WINDOW_SIZES_S[name], window))
            close_windows(state, self.grace_s)
            forget_flushed(state, self._acknowledged.get(state.mark.partition, -1))
            if state.closed_at:
                batch.closed_hosts[host] = state.mark.partition
            updates.append((host, state.mark.partition, state, batch))
        await self.states.write(updates)
        await self.states.write(self._expired(batch))
        for name, touched in windows.items():
            await self.sinks[name].write(touched)
        batch.samples = []  # added: only its records' offsets are still needed
        self.stats.processed += len(batch.records)

    def _log_late(self, late: list[tuple[WindowSample, str]]) -> None:
        for sample, name in late:
            self.stats.late_samples += 1
            log.warning(
                "late sample of %s (partition %d, offset %d, at %s): its %s window had closed; "
                "in silver, not in gold",
                sample.host_id,
                sample.partition,
                sample.offset,
                datetime.fromtimestamp(sample.sample_time_s, tz=UTC).isoformat(),
                name,
            )

    def _expired(self, batch: Batch) -> list[HostUpdate]:
        """Forget the hosts whose windows have all expired, on the partitions of
        ``batch`` (a table deletes through an event of its partition)."""
        now = time.monotonic()
        if now - self._swept_at < EXPIRY_SWEEP_INTERVAL_S:
            return []
        self._swept_at = now
        partitions = {r.partition for r in batch.records}
        marks: dict[str, Watermark] = {
            host: state.mark
            for host, state in self.states.every()
            if state.mark.partition in partitions
        }
        expired = expired_hosts(marks, self.retention_s)
        if expired:
            log.info("forgot the state of %d hosts whose windows expired", len(expired))
        return [(host, marks[host].partition, None, batch) for host in expired]


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
