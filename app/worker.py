"""The worker's bootstrap: builds the Faust app, its tables, sinks and stages from the
settings, and hands each stage what it uses. Nothing else reads the settings.

The database is opened (and its schema ensured) once, before Faust starts, in the
event loop the worker then runs on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import asdict
from typing import Any

import faust
import mode.loop

from agents.bronze import StoreRawRecords
from agents.gold import AggregateWindows, FinalizeWindows
from agents.silver import ValidateSamples
from app.preflight import prepare_worker
from app.quiet_logs import quiet_repeats
from config import WorkerSettings
from runtime.checkpoint import Checkpoint
from runtime.consumer import BatchingApp
from runtime.pipeline import Pipeline, Stage
from runtime.tables import changelog_partitions_known
from schemas.anomalies import GoldRow, Thresholds
from schemas.rows import Limits
from schemas.stats import PipelineStats
from sinks.coalescing import CoalescingSink
from sinks.medallion_db import MedallionDb
from sinks.medallion_tables import BRONZE, GOLD, REJECTED, SILVER
from sinks.postgres import waiting_for_postgres
from tables.gold import GoldTables
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
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        # Faust's default (60 s) makes a restarted worker wait that long for its
        # old membership to expire before it gets partitions back.
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
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
    tables = GoldTables.add_to(app, settings.topic_partitions, settings.gold_retention_s)
    stats = PipelineStats()
    bronze, silver, rejected = db.sink(BRONZE), db.sink(SILVER), db.sink(REJECTED)
    gold: dict[str, CoalescingSink[GoldRow]] = {
        name: CoalescingSink(db.sink(table), key=lambda row: (row.host_id, row.window_start))
        for name, table in GOLD.items()
    }
    stages: list[Stage] = [
        StoreRawRecords(bronze, stats),
        ValidateSamples(
            silver=silver,
            rejected=rejected,
            sources=db.silver_sources,
            dead_letters=dead_letters,
            limits=Limits(
                max_future_skew_s=settings.max_future_skew_s,
                max_id_chars=settings.max_id_chars,
                max_text_chars=settings.max_text_chars,
            ),
            dead_letter_max_bytes=settings.dead_letter_max_bytes,
            stats=stats,
        ),
        AggregateWindows(
            tables=tables,
            sinks=dict(gold),
            tables_ready=lambda: changelog_partitions_known(app, tables.all),
            thresholds=Thresholds(
                cpu_p95_percent=settings.anomaly_cpu_p95_percent,
                memory_max_percent=settings.anomaly_memory_max_percent,
                disk_max_percent=settings.anomaly_disk_max_percent,
            ),
            grace_s=settings.gold_grace_s,
            retention_s=settings.gold_retention_s,
            stats=stats,
        ),
    ]
    checkpoint = Checkpoint(
        [bronze, silver, rejected, *gold.values()], settings.gold_upsert_interval_s
    )

    def acknowledged(records: int) -> None:
        stats.acknowledged += records

    Pipeline(app, metrics, stages, checkpoint, on_acknowledged=acknowledged)
    app.timer(settings.gold_finalize_interval_s, on_leader=True, name="finalize_windows")(
        FinalizeWindows(
            db.finalize_closed_windows, settings.gold_grace_s, settings.gold_finalize_interval_s
        )
    )

    def figures() -> dict[str, Any]:
        # ``waiting_for``: null, or the outage the worker is waiting out: the service,
        # what failed first, the error, since when (UTC) and for how long.
        waiting = waiting_for_postgres()
        return {
            **asdict(stats),
            "gold_rows": sum(sink.rows_written for sink in gold.values()),
            "waiting_for": waiting and waiting.as_json(),
        }

    add_stats_page(app, figures)
    app.on_shutdown_close(db.close)
    return app


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
