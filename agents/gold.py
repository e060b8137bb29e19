"""The gold agent: 5-minute and hourly windows per host, in RocksDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from agents.batch import Batch, on_partition_of
from app.core import app, settings
from app.stats import stats
from app.topics import gold_batches
from schemas.anomalies import GoldRow, Thresholds, gold_row
from schemas.rows import window_sample
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
from sinks.medallion import GOLD, finalize_closed_windows
from sinks.postgres import PostgresSink, connect, ensure_schema
from tables.gold import gold_windows, host_watermarks

log = logging.getLogger(__name__)

THRESHOLDS = Thresholds(
    cpu_p95_percent=settings.anomaly_cpu_p95_percent,
    memory_max_percent=settings.anomaly_memory_max_percent,
    disk_max_percent=settings.anomaly_disk_max_percent,
)


class LiveRows:
    """Gold rows of the windows folded since the last write, and the batches they cover.

    Gold writes them to PostgreSQL at most every ``HOSTSTREAM_GOLD_UPSERT_INTERVAL_S``,
    newest row per window. A batch is finished (its records acknowledged) only by the
    write that covers it: offsets are never committed ahead of gold's rows.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.sinks: dict[str, Sink[GoldRow]] | None = None
        self._rows: dict[tuple[str, str, datetime], GoldRow] = {}
        self._batches: list[Batch] = []
        self._since: float | None = None
        self._lock = asyncio.Lock()

    def hold(self, batch: Batch, windows: dict[str, list[GoldRow]]) -> None:
        for name, rows in windows.items():
            for row in rows:
                self._rows[name, row.host_id, row.window_start] = row
        self._batches.append(batch)
        if self._since is None:
            self._since = asyncio.get_running_loop().time()

    def drop(self) -> None:
        """Forget the rows held and give up their batches: after a rebalance their
        partitions may be another worker's, whose newer rows these must not overwrite.
        The batches are read again from the committed offsets (see agents/bronze.py)."""
        rows, batches = self._rows, self._batches
        self._rows, self._batches, self._since = {}, [], None
        for batch in batches:
            batch.done.cancel()
        if rows:
            log.info("rebalance: %d gold rows not written will be made again", len(rows))

    def due(self) -> bool:
        return (
            self._since is not None
            and asyncio.get_running_loop().time() - self._since >= self.interval_s
        )

    async def write(self) -> None:
        """Upsert the rows held, then finish the batches they cover."""
        async with self._lock:
            if self.sinks is None or not self._batches:
                return
            rows, batches = self._rows, self._batches
            self._rows, self._batches, self._since = {}, [], None
            try:
                for name, sink in self.sinks.items():
                    await sink.write([row for (n, *_), row in rows.items() if n == name])
                    await sink.flush()
            except Exception as exc:
                for batch in batches:
                    batch.finish(exc)
                return
            stats.gold_rows += len(rows)
            for batch in batches:
                batch.finish()


live_rows = LiveRows(settings.gold_upsert_interval_s)


@app.agent(gold_batches)
async def aggregate_windows(batches: Any) -> None:
    """Fold each batch into the windowed tables, once per (host, window); the windows it
    touched go to ``gold.perf_5min_summary`` and ``gold.perf_1h_summary`` with the
    next write of :data:`live_rows`."""
    await _changelog_partitions_known()
    pool = await connect(settings.postgres_dsn.get_secret_value())
    try:
        await ensure_schema(pool)
        live_rows.sinks = {name: PostgresSink(pool, table) for name, table in GOLD.items()}
        async for batch in batches:
            if batch.abandoned:
                continue
            try:
                windows, watermarks = _fold_batch(batch)
                # The watermarks go to their changelog only once the windows' changelog
                # records are in Kafka: the two tables' changelogs are different topics,
                # and a table restored from them must never have a watermark claiming
                # samples its windows lack (gold would skip those samples as replays).
                await asyncio.gather(*(w.table.changelog_written() for w in gold_windows.values()))
                _store_watermarks(batch, watermarks)
                _expire_watermarks(batch)
            except Exception as exc:
                batch.finish(exc)
                continue
            live_rows.hold(batch, windows)
            batch.samples = []  # folded: only its records' offsets are still needed
            batch.free_room()
            if live_rows.due():
                await live_rows.write()
    finally:
        live_rows.sinks = None
        await pool.close()


@app.on_partitions_revoked.connect
async def drop_live_rows(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    """Drop the rows of revoked partitions before another worker takes them."""
    live_rows.drop()


@app.timer(1.0)
async def write_live_rows() -> None:
    """Write the held rows once they are due, also when no batch comes to do it."""
    if live_rows.due():
        await live_rows.write()


async def _changelog_partitions_known() -> None:
    """Wait until the consumer's metadata has the tables' changelog topics.

    On a first start the worker creates them a moment before it reads: a table
    write made before the metadata has them fails its partition check (Faust's
    PartitionsMismatch, "the changelog topic has 0 partitions").
    """
    for table in (*(w.table for w in gold_windows.values()), host_watermarks):
        topic = table.changelog_topic.get_topic_name()
        for attempt in itertools.count():
            if app.consumer.topic_partitions(topic):
                break
            if attempt == 100:
                log.warning("still waiting for Kafka metadata of %s after 10 s", topic)
            await asyncio.sleep(0.1)


def _fold_batch(batch: Batch) -> tuple[dict[str, list[GoldRow]], dict[str, Watermark]]:
    """Fold the batch into the windowed tables; return the rows of the windows it
    touched, by window name, and its hosts' new watermarks (not stored yet)."""
    samples = [window_sample(row) for row in batch.samples]
    partitions = {s.host_id: s.partition for s in samples}
    marks = {}
    for host, partition in partitions.items():
        with on_partition_of(batch.event_of(partition)):
            stored = host_watermarks.get(host)
        if stored is not None:
            marks[host] = Watermark(**stored)
    judged = judge(samples, marks, settings.gold_grace_s)
    for late, name in judged.late:
        stats.late_samples += 1
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
        name: _fold_windows(batch, judged.on_time[name], judged.replayed, name, size_s)
        for name, size_s in WINDOW_SIZES_S.items()
    }
    return rows, judged.watermarks


def _store_watermarks(batch: Batch, watermarks: dict[str, Watermark]) -> None:
    for host, mark in watermarks.items():
        with on_partition_of(batch.event_of(mark.partition)):
            host_watermarks[host] = asdict(mark)


WATERMARK_SWEEP_INTERVAL_S = 60.0
"""How often gold looks for watermarks of hosts gone quiet (a scan of the table)."""
_swept_at = -math.inf


def _expire_watermarks(batch: Batch) -> None:
    """Delete the watermarks of hosts whose windows have all expired, on the
    partitions of ``batch`` (a table deletes through an event of its partition)."""
    global _swept_at
    now = time.monotonic()
    if now - _swept_at < WATERMARK_SWEEP_INTERVAL_S:
        return
    _swept_at = now
    partitions = {r.partition for r in batch.records}
    marks = {
        host: Watermark(**stored)
        for host, stored in host_watermarks.items()
        if stored["partition"] in partitions
    }
    expired = expired_hosts(marks, settings.gold_retention_s)
    for host in expired:
        with on_partition_of(batch.event_of(marks[host].partition)):
            del host_watermarks[host]
    if expired:
        log.info("forgot the watermarks of %d hosts whose windows expired", len(expired))


def _fold_windows(
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
    table = gold_windows[name].table
    rows = []
    for (host, start), group in groups.items():
        key = (host, table.window.ranges(start)[0])
        with on_partition_of(batch.event_of(partitions[host])):
            stored = table.get(key)
            current = decode(stored) if stored is not None else None
            merged = fold(current, group)
            if merged is not None:
                table[key] = encode(merged)
        latest = merged or current
        if latest is not None:
            rows.append(gold_row(host, start, size_s, latest, THRESHOLDS))
    return rows


@app.timer(settings.gold_finalize_interval_s, on_leader=True)
async def finalize_windows() -> None:
    """Mark final the gold rows of windows that closed and settled."""
    pool = await connect(settings.postgres_dsn.get_secret_value(), max_size=1)
    try:
        marked = await finalize_closed_windows(
            pool, settings.gold_grace_s, settings.gold_finalize_interval_s
        )
    finally:
        await pool.close()
    if marked:
        log.info("marked %d gold windows final", marked)
