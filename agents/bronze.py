"""The bronze agent: every record of the metrics topic, as received, into PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from agents.events import kafka_origin
from app.core import app, settings
from app.stats import stats
from app.topics import metrics_topic
from schemas.rows import bronze_row
from sinks.medallion import BRONZE, postgres_sink

log = logging.getLogger(__name__)


@app.agent(metrics_topic)
async def store_raw_records(stream: Any) -> None:
    """Write each batch of records to ``bronze.bronze_performance``.

    ``take_events`` acks a batch only after this body has written it, so
    offsets are committed after the rows, never before.
    """
    async with postgres_sink(settings.postgres_dsn.get_secret_value(), BRONZE) as sink:
        async for events in stream.take_events(
            settings.batch_max_records, within=settings.batch_max_wait_s
        ):
            ingested_at = datetime.now(UTC)
            before = sink.rows_written
            await sink.write([bronze_row(e.value, kafka_origin(e), ingested_at) for e in events])
            await sink.flush()
            stats.bronze_rows += sink.rows_written - before
