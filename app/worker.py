"""The worker's bootstrap: builds the Faust app, its tables, sinks and stages from the
settings, and hands each stage what it uses. Nothing else reads the settings.

The database is opened (and its schema ensured) once, before Faust starts, in the
event loop the worker then runs on.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from dataclasses import asdict
from typing import Any

import faust
import mode.loop
from aiokafka import AIOKafkaConsumer

from agents.alerts import RaiseAlerts
from agents.bronze import StoreRawRecords
from agents.gold import AggregateWindows, FinalizeWindows
from agents.lake import ArchiveRecords
from agents.notify import PostAlerts
from agents.silver import ValidateSamples
from app.preflight import alerts_topic, prepare_worker
from app.quiet_logs import quiet_repeats
from config import WorkerSettings
from runtime.checkpoint import Checkpoint
from runtime.consumer import BatchingApp, Records
from runtime.pipeline import Pipeline, Stage
from runtime.tables import changelog_partitions_known
from schemas.alerts import AlertStats
from schemas.anomalies import GoldRow, GoldWindow, gold_row
from schemas.lake import LakeLimits, LakeStats
from schemas.stats import PipelineStats
from sinks.base import Sink
from sinks.coalescing import CoalescingSink
from sinks.gcs import GcsBucket
from sinks.medallion_db import MedallionDb
from sinks.medallion_tables import BRONZE, GOLD, HOSTS, REJECTED, SILVER
from sinks.postgres import waiting_for_postgres
from sinks.slack import SlackWebhook
from tables.gold import HostStates
from web.api import Lookups, add_api
from web.dashboard import add_dashboard
from web.health import add_probe_pages, not_ready_because
from web.ingest import add_ingest_page
from web.metrics import Notifier, WorkerFigures, WorkerMetrics, add_metrics_page
from web.middleware import require_token
from web.stats import add_stats_page


def create_app(settings: WorkerSettings) -> BatchingApp:
    """A Faust app wired to the settings' broker, store and web server."""
    return BatchingApp(
        settings.app_id,
        broker=settings.faust_broker_url,
        store=settings.store,
        # Per app id: RocksDB state belongs to one consumer group's changelogs, and
        # Faust refuses to start on state another group (or an older Kafka) wrote.
        datadir=str(settings.data_dir / settings.app_id),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        # Faust's pages that show table contents to anyone: the API answers lookups.
        web_router_enabled=False,
        web_tables_enabled=False,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        # Faust's default (60 s) makes a restarted worker wait that long for its
        # old membership to expire before it gets partitions back.
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        consumer_group_instance_id=settings.group_instance_id,
        table_standby_replicas=settings.table_standby_replicas,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        # A new consumer group starts at the beginning: samples produced before
        # the first worker started are processed, not skipped.
        consumer_auto_offset_reset="earliest",
        # One fetch is one batch (see runtime/consumer.py).
        broker_max_poll_records=settings.batch_max_records,
        key_serializer="raw",
        value_serializer="raw",
    )


def store_options(settings: WorkerSettings) -> dict[str, Any]:
    """RocksDB options of each table partition, sized by the settings.

    Faust's defaults give every partition's database a 2 GB block cache and three
    64 MB write buffers; gold reads its state from memory and RocksDB only on a
    host's first sample after a start or rebalance, so small caches cost nothing.
    """
    return {
        "write_buffer_size": settings.rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_bytes,
        "block_cache_compressed_size": settings.rocksdb_block_cache_bytes,
    }


def build_worker(settings: WorkerSettings, db: MedallionDb) -> BatchingApp:
    """The app with the medallion pipeline: bronze, silver and gold stages, gold's
    tables and finaliser, and the ``/stats/`` page."""
    app = create_app(settings)
    # Values stay bytes: bronze keeps them exactly as received, silver decodes and checks.
    metrics = app.topic(
        settings.topic, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
    )
    dead_letters = app.topic(
        f"{settings.topic}.dlq",
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
    )
    states = HostStates.add_to(app, settings.topic_partitions, store_options(settings))
    stats = PipelineStats()
    alert_stats = AlertStats()
    bronze, silver, rejected = db.sink(BRONZE), db.sink(SILVER), db.sink(REJECTED)
    # A host's newest sample, written once per checkpoint however many it sent.
    hosts = CoalescingSink(
        db.sink(HOSTS),
        key=lambda r: r.host_id,
        build=lambda r: r,
        replaces=lambda new, held: new.last_sample_time >= held.last_sample_time,
    )
    thresholds, limits = settings.thresholds, settings.limits
    gold: dict[str, CoalescingSink[GoldWindow, GoldRow]] = {
        name: CoalescingSink(
            db.sink(table),
            key=lambda w: (w.host_id, w.start_s),
            build=lambda w: gold_row(w.host_id, w.start_s, w.size_s, w.aggregate, thresholds),
        )
        for name, table in GOLD.items()
    }
    aggregate = AggregateWindows(
        states=states,
        sinks=dict(gold),
        tables_ready=lambda: changelog_partitions_known(app, settings.topic, [states.table]),
        grace_s=settings.gold_grace_s,
        retention_s=settings.gold_retention_s,
        stats=stats,
    )
    stages: list[Stage] = [
        StoreRawRecords(bronze, stats),
        ValidateSamples(
            silver=silver,
            rejected=rejected,
            hosts=hosts,
            sources=db.silver_sources,
            dead_letters=dead_letters,
            limits=limits,
            dead_letter_max_bytes=settings.dead_letter_max_bytes,
            stats=stats,
        ),
        aggregate,
        RaiseAlerts(
            states=states,
            topic=app.topic(
                alerts_topic(settings),
                key_type=bytes,
                value_type=bytes,
                partitions=settings.topic_partitions,
            ),
            thresholds=thresholds,
            quiet_after_s=settings.alerts_quiet_after_s,
            stats=alert_stats,
        ),
    ]
    # In the order the checkpoint flushes them, by the name /metrics gives them.
    sinks: dict[str, Sink[Any]] = {
        "bronze": bronze,
        "silver": silver,
        "rejected": rejected,
        "hosts": hosts,
        **{f"gold_{name}": sink for name, sink in gold.items()},
        "gold_hosts": states,
    }
    prometheus = WorkerMetrics(sinks)
    checkpoint = Checkpoint(
        list(sinks.values()), settings.gold_upsert_interval_s, on_flush=prometheus.sink_flushed
    )

    def acknowledged(records: Records) -> None:
        stats.count_acknowledged(records)
        aggregate.acknowledged(records)

    pipeline = Pipeline(app, metrics, stages, checkpoint, on_acknowledged=acknowledged)
    app.timer(settings.gold_finalize_interval_s, on_leader=True, name="finalize_windows")(
        FinalizeWindows(
            db.finalize_closed_windows, settings.gold_grace_s, settings.gold_finalize_interval_s
        )
    )

    lake = add_lake(app, settings)
    notifier = add_notifier(app, settings, alert_stats)

    def figures() -> dict[str, Any]:
        # ``waiting_for``: null, or the outage the worker is waiting out: the service,
        # what failed first, the error, since when (UTC) and for how long.
        waiting = waiting_for_postgres()
        return {
            **asdict(stats),
            "gold_rows": sum(sink.rows_written for sink in gold.values()),
            "waiting_for": waiting and waiting.as_json(),
            "lake": lake and lake_figures(lake),
        }

    add_stats_page(app, figures)
    prometheus.read(
        WorkerFigures(
            app=app,
            topic=settings.topic,
            stats=stats,
            gold_rows=lambda: sum(sink.rows_written for sink in gold.values()),
            records_in=pipeline.records_in,
            lake=lake and lake.stats,
            lake_pending_bytes=lake and (lambda: lake.pending_bytes),
            committed_at=lambda: checkpoint.committed_at,
            alerts=alert_stats,
            notifier=notifier
            and Notifier(
                waiting=lambda: notifier.waiting,
                failing_since=lambda: notifier.webhook.failing_since,
            ),
        )
    )
    add_metrics_page(app, prometheus)
    add_probe_pages(app, settings.topic)
    add_ingest_page(
        app,
        metrics,
        limits,
        settings.ingest_token.get_secret_value(),
        settings.ingest_max_body_bytes,
    )
    add_api(
        app,
        Lookups(db.pool, states, thresholds),
        not_ready=lambda: not_ready_because(app, settings.topic),
        max_range_s=settings.api_max_range_s,
        max_id_chars=settings.max_id_chars,
    )
    add_dashboard(app, token_required=bool(settings.web_token.get_secret_value()))
    require_token(app, settings.web_token.get_secret_value())
    return_freed_memory(app)
    app.on_shutdown_close(db.close)
    return app


def own_group_consumer(settings: WorkerSettings, group: str) -> AIOKafkaConsumer:
    """A consumer in the group ``<app_id>-<group>`` that commits by hand, for an agent
    beside the pipeline (made in the running loop)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"{settings.app_id}-{group}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, settings.broker_session_timeout_s / 3) * 1000),
    )


def lake_agent(settings: WorkerSettings) -> ArchiveRecords:
    """The lake agent: the metrics topic in its own consumer group, into the bucket."""
    return ArchiveRecords(
        consumer=lambda: own_group_consumer(settings, "lake"),
        bucket=GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host or None),
        topic=settings.topic,
        limits=LakeLimits(
            max_records=settings.lake_max_records,
            max_bytes=settings.lake_max_bytes,
            max_age_s=settings.lake_max_age_s,
            gzip=settings.lake_gzip,
        ),
        fetch_max_records=settings.batch_max_records,
        stats=LakeStats(),
    )


def add_notifier(
    app: BatchingApp, settings: WorkerSettings, stats: AlertStats
) -> PostAlerts | None:
    """Run the Slack notifier in ``app`` when a webhook is set: the alerts topic in its
    own consumer group (``<app_id>-alerts``), beside the pipeline."""
    url = settings.slack_webhook_url.get_secret_value()
    if not url:
        return None
    webhook = SlackWebhook(url)
    notifier = PostAlerts(
        consumer=lambda: own_group_consumer(settings, "alerts"),
        reader=lambda: AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
        ),
        webhook=webhook,
        topic=alerts_topic(settings),
        host_interval_s=settings.alerts_host_interval_s,
        dedupe_window_s=settings.alerts_dedupe_window_s,
        dashboard_url=settings.alerts_dashboard_url,
        stats=stats,
    )
    app.task(notifier.run)
    app.on_shutdown_close(webhook.close)
    return notifier


def add_lake(app: BatchingApp, settings: WorkerSettings) -> ArchiveRecords | None:
    """Run the lake agent in ``app`` when the lake is enabled."""
    if not settings.lake_enabled:
        return None
    lake = lake_agent(settings)
    app.task(lake.run)
    app.on_shutdown_close(lake.bucket.close)
    return lake


def lake_figures(lake: ArchiveRecords) -> dict[str, Any]:
    """What ``/stats/`` shows of the lake; ``gcs_waiting_s``: how long uploads have been
    failing (null while GCS answers)."""
    waiting = lake.bucket.waiting_s if isinstance(lake.bucket, GcsBucket) else None
    return {**asdict(lake.stats), "gcs_waiting_s": waiting and round(waiting, 1)}


MEMORY_RETURN_INTERVAL_S = 10.0


def return_freed_memory(app: BatchingApp) -> None:
    """Have glibc hand memory the worker freed back to the system every few seconds.

    A checkpoint frees in one go what it wrote (every changed host's state encoded,
    the gold rows, COPY buffers), and glibc keeps such memory in its arenas for the
    next allocation instead of returning it: at 10,000 hosts the RSS rose from 420
    to 650 MB over a million records, of which malloc_trim returned up to 220 MB.
    Nothing to do where the C library is not glibc (musl, macOS).
    """
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return

    async def trim_now() -> None:
        trim(0)

    app.timer(MEMORY_RETURN_INTERVAL_S, name="return_freed_memory")(trim_now)


def run_worker(settings: WorkerSettings, loglevel: str) -> None:
    """Open the database, build the app and run a Faust worker until it is stopped;
    raises as :func:`~app.preflight.prepare_worker` does."""
    # uvloop runs Faust's per-event machinery about 15 % faster (measured in FACTS.md);
    # it must be the loop policy before the worker's loop is made.
    mode.loop.use("uvloop")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    db = loop.run_until_complete(prepare_worker(settings))
    app = build_worker(settings, db)
    worker = faust.Worker(app, loglevel=loglevel, loop=loop)
    # aiokafka and Faust log every message sent at debug level, and the worker's
    # logging setup leaves their loggers enabled for it: a few percent of the CPU.
    level = max(logging.INFO, logging.getLevelNamesMapping().get(loglevel.upper(), logging.INFO))
    for name in ("aiokafka", "faust"):
        logging.getLogger(name).setLevel(level)
    quiet_repeats("aiokafka")
    # The worker allocates a dozen tracked objects per record, few of them in cycles:
    # at Python's default threshold (700) the young generation was collected every
    # few dozen records, and every full collection walked the modules and the app
    # built at start. Those frozen and the threshold raised, a record cost 11-15 %
    # less CPU in four paired runs of the benchmark.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    worker.execute_from_commandline()
