"""``/metrics``: the worker's own figures in Prometheus' text format.

The counters the worker keeps anyway (:class:`~schemas.stats.PipelineStats`, the
lake's :class:`~schemas.lake.LakeStats`) are read when Prometheus scrapes, by a
collector of this module, so a record costs nothing more; only the checkpoint's
flushes, a few a second, go into histograms as they happen. Each app has a
registry of its own, never prometheus-client's global one: tests run several
workers in one process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from schemas.alerts import AlertStats
from schemas.lake import LakeStats
from schemas.stats import REJECTION_CLASSES, PipelineStats
from sinks.base import Sink

ROWS_BUCKETS = (1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 50_000, float("inf"))
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
POSITION_TIMEOUT_S = 1.0
"""Longest wait for the consumer's read position of a partition: a scrape must answer."""


@dataclass(kw_only=True)
class WorkerFigures:
    """Where the figures of ``/metrics`` are read at scrape time."""

    app: faust.App
    topic: str
    """The metrics topic, whose partitions' lag is shown."""
    stats: PipelineStats
    gold_rows: Callable[[], int]
    records_in: Mapping[str, int]
    """Medallion stage -> records it processed."""
    lake: LakeStats | None
    lake_pending_bytes: Callable[[], int] | None
    """NDJSON bytes the lake read and has not yet written; None when the lake is off."""
    committed_at: Callable[[], float | None]
    """``time.monotonic()`` of the checkpoint's last acknowledgement; None before."""
    alerts: AlertStats
    notifier: Notifier | None
    """The Slack notifier's state; None when no webhook is set."""


@dataclass(kw_only=True)
class Notifier:
    """What ``/metrics`` reads of the Slack notifier."""

    waiting: Callable[[], int]
    """Events read and not yet taken by the webhook."""
    failing_since: Callable[[], float | None]
    """``time.monotonic()`` since when the webhook refuses; None while it takes them."""


class WorkerMetrics:
    """The registry behind one worker's ``/metrics``."""

    def __init__(self, sinks: Mapping[str, Sink[Any]]) -> None:
        """``sinks``: the checkpoint's sinks by the name the histograms give them."""
        self.registry = CollectorRegistry(auto_describe=False)
        self._figures: _FiguresCollector | None = None
        self._names = {id(sink): name for name, sink in sinks.items()}
        self._rows = Histogram(
            "hoststream_sink_flush_rows",
            "Rows a sink stored between two checkpoint flushes (a replayed row is not counted).",
            ["sink"],
            buckets=ROWS_BUCKETS,
            registry=self.registry,
        )
        self._seconds = Histogram(
            "hoststream_sink_flush_seconds",
            "Seconds the checkpoint's flush of a sink took; sinks that write as a stage "
            "hands them rows (bronze, silver, rejected) flush at once.",
            ["sink"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

    def sink_flushed(self, sink: Sink[Any], rows: int, seconds: float) -> None:
        """The checkpoint's :data:`~runtime.checkpoint.FlushObserver`."""
        name = self._names.get(id(sink), type(sink).__name__)
        self._rows.labels(name).observe(rows)
        self._seconds.labels(name).observe(seconds)

    def read(self, figures: WorkerFigures) -> None:
        """Serve ``figures`` too, read at each scrape."""
        self._figures = _FiguresCollector(figures)
        self.registry.register(self._figures)

    def text(self) -> bytes:
        """The exposition, as Prometheus scrapes it."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """:meth:`text`, once the figures that must be asked for are in."""
        if self._figures is not None:
            f = self._figures.figures
            self._figures.positions = await read_positions(f.app, f.topic, f.stats.next_offsets)
        return self.text()


class _FiguresCollector:
    def __init__(self, figures: WorkerFigures) -> None:
        self.figures = figures
        self.positions: dict[int, int] = {}
        """Read positions of partitions with nothing acknowledged yet, at this scrape."""

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        stats = f.stats
        out = CounterMetricFamily(
            "hoststream_records_out",
            "Rows an agent stored (new ones only) or records it archived.",
            labels=["agent"],
        )
        out.add_metric(["store_raw_records"], stats.bronze_rows)
        out.add_metric(["validate_samples"], stats.silver_rows)
        out.add_metric(["aggregate_windows"], f.gold_rows())
        if f.lake is not None:
            out.add_metric(["archive_raw_records"], f.lake.records)
        yield out
        processed = CounterMetricFamily(
            "hoststream_records_in",
            "Records a medallion stage took in; every stage takes each batch whole.",
            labels=["agent"],
        )
        for agent, records in f.records_in.items():
            processed.add_metric([agent], records)
        yield processed
        yield CounterMetricFamily(
            "hoststream_records_acknowledged",
            "Records every sink flushed: their offsets may be committed.",
            value=stats.acknowledged,
        )
        rejected = CounterMetricFamily(
            "hoststream_records_rejected",
            "Records silver refused, by class of reason (the reasons: silver.rejected).",
            labels=["reason_class"],
        )
        for kind in REJECTION_CLASSES:
            rejected.add_metric([kind], stats.rejected_by_class.get(kind, 0))
        yield rejected
        yield CounterMetricFamily(
            "hoststream_duplicates",
            "Records whose sample silver already had (same event_id).",
            value=stats.duplicates,
        )
        yield CounterMetricFamily(
            "hoststream_late_samples",
            "(sample, window) pairs that came after their window closed: in silver, not gold.",
            value=stats.late_samples,
        )
        lag = GaugeMetricFamily(
            "hoststream_consumer_lag_records",
            "Records of a partition this worker owns past the last one it acknowledged (past "
            "its read position while it has acknowledged none since it started).",
            labels=["topic", "partition"],
        )
        done = {**self.positions, **stats.next_offsets}
        for partition, records in partition_lags(f.app, f.topic, done).items():
            lag.add_metric([f.topic, str(partition)], records)
        yield lag
        committed = f.committed_at()
        if committed is not None:
            yield GaugeMetricFamily(
                "hoststream_seconds_since_last_commit",
                "Seconds since the checkpoint last acknowledged batches (then Faust commits).",
                value=time.monotonic() - committed,
            )
        yield from alert_metrics(f.alerts, f.notifier)
        if f.lake is not None:
            yield CounterMetricFamily(
                "hoststream_lake_objects", "Lake objects written and committed.", f.lake.objects
            )
            yield CounterMetricFamily(
                "hoststream_lake_bytes", "Bytes uploaded to the lake.", f.lake.bytes
            )
            yield GaugeMetricFamily(
                "hoststream_lake_paused_partitions",
                "Partitions the lake does not read now: their objects wait for GCS.",
                value=f.lake.paused_partitions,
            )
        if f.lake_pending_bytes is not None:
            yield GaugeMetricFamily(
                "hoststream_lake_pending_bytes",
                "NDJSON bytes the lake read and has not yet written to GCS.",
                value=f.lake_pending_bytes(),
            )


def alert_metrics(stats: AlertStats, notifier: Notifier | None) -> Iterator[Metric]:
    """The alerts stage's events and, when a webhook is set, the notifier's progress."""
    raised = CounterMetricFamily(
        "hoststream_alert_events",
        "Alert events put on <topic>.alerts, by kind; stale ones (old data) are never posted.",
        labels=["kind", "stale"],
    )
    for kind in ("firing", "resolved"):
        for stale in (False, True):
            raised.add_metric([kind, str(stale).lower()], stats.raised.get((kind, stale), 0))
    yield raised
    if notifier is None:
        return
    yield CounterMetricFamily(
        "hoststream_alert_messages_posted",
        "Slack messages the webhook took.",
        stats.messages_posted,
    )
    yield CounterMetricFamily(
        "hoststream_alert_events_posted", "Alert events in those messages.", stats.events_posted
    )
    yield GaugeMetricFamily(
        "hoststream_alert_events_waiting",
        "Alert events read from the topic and not yet taken by the webhook.",
        value=notifier.waiting(),
    )
    failing = notifier.failing_since()
    yield GaugeMetricFamily(
        "hoststream_alert_webhook_failing_seconds",
        "Seconds the Slack webhook has refused or not answered (0 while it takes messages).",
        value=0.0 if failing is None else time.monotonic() - failing,
    )


def partition_lags(app: faust.App, topic: str, done: Mapping[int, int]) -> dict[int, int]:
    """Partition -> records of ``topic`` past the offset ``done`` gives, for the
    partitions this worker owns whose end offset it knows (once it fetched from them)."""
    consumer = app.consumer
    lags = {}
    for tp in consumer.assignment():
        if tp.topic != topic:
            continue
        end = consumer.highwater(tp)
        position = done.get(tp.partition)
        if end is not None and position is not None:
            lags[tp.partition] = max(0, end - position)
    return lags


async def read_positions(
    app: faust.App, topic: str, acknowledged: Mapping[int, int]
) -> dict[int, int]:
    """Partition -> the consumer's read position, for the partitions of ``topic`` this
    worker owns and has acknowledged nothing of since it started (a worker stuck on its
    first batch has a lag too)."""
    consumer = app.consumer
    positions = {}
    for tp in consumer.assignment():
        if tp.topic != topic or tp.partition in acknowledged:
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT_S)
        except Exception:  # taken away meanwhile, or the consumer busy: no figure this time
            continue
        if position is not None:
            positions[tp.partition] = position
    return positions


def add_metrics_page(app: faust.App, metrics: WorkerMetrics) -> None:
    """Serve ``metrics`` at ``/metrics``."""

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return web.bytes(await metrics.scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})
