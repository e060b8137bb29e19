"""The silver agent: validate and normalise samples into PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

from agents.events import kafka_origin
from app.core import app, settings
from app.stats import stats
from app.topics import metrics_topic
from schemas.rows import Rejection, validate_batch
from sinks.medallion import SILVER, postgres_sink

log = logging.getLogger(__name__)


@app.agent(metrics_topic)
async def validate_samples(stream: Any) -> None:
    """Write each batch's valid samples to ``silver.silver_performance``.

    A record that fails validation is logged with its offset and reason,
    counted, and skipped: it never stops the worker (bronze still keeps it).
    """
    async with postgres_sink(settings.postgres_dsn.get_secret_value(), SILVER) as sink:
        async for events in stream.take_events(
            settings.batch_max_records, within=settings.batch_max_wait_s
        ):
            rows, rejections = validate_batch((e.value, kafka_origin(e)) for e in events)
            for rejection in rejections:
                _count(rejection)
            before = sink.rows_written
            await sink.write(rows)
            await sink.flush()
            stats.silver_rows += sink.rows_written - before


def _count(rejection: Rejection) -> None:
    origin = rejection.origin
    where = f"{origin.topic}[{origin.partition}]@{origin.offset}"
    stats.rejected += 1
    stats.last_rejection = f"{where}: {rejection.reason}"
    log.warning("rejected record %s: %s", where, rejection.reason)
