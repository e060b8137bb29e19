"""The silver agent: validate and normalise samples; set bad records aside."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg

from agents.batch import Batch
from app.core import app, settings
from app.stats import stats
from app.topics import dead_letters, gold_batches, silver_batches
from schemas.rows import Rejection, SilverRow, rejected_row, validate_batch
from sinks.medallion import REJECTED, SILVER, silver_sources
from sinks.postgres import PostgresSink, connect, ensure_schema

log = logging.getLogger(__name__)

LOGGED_REJECTIONS_PER_BATCH = 10


@app.agent(silver_batches)
async def validate_samples(batches: Any) -> None:
    """Write each batch's valid samples to ``silver.silver_performance``.

    A record that fails validation goes to ``silver.rejected`` and the
    dead-letter topic with the reason; it never stops the worker. A sample
    already in silver (same ``event_id``, another record) is a duplicate:
    stored once, and not passed to gold.
    """
    pool = await connect(settings.postgres_dsn.get_secret_value())
    try:
        await ensure_schema(pool)
        silver = PostgresSink(pool, SILVER)
        rejected = PostgresSink(pool, REJECTED)
        async for batch in batches:
            if batch.abandoned:
                continue
            try:
                await _validate(batch, pool, silver, rejected)
            except Exception as exc:
                batch.finish(exc)
                continue
            await gold_batches.send(value=batch)
    finally:
        await pool.close()


async def _validate(
    batch: Batch,
    pool: asyncpg.Pool,
    silver: PostgresSink[SilverRow],
    rejected: PostgresSink[Any],
) -> None:
    now = datetime.now(UTC)
    rows, rejections = validate_batch(batch.records, now, settings.max_future_skew_s)
    if rejections:
        await _set_aside(rejections, rejected, now)
    before = silver.rows_written
    await silver.write(rows)
    await silver.flush()
    stats.silver_rows += silver.rows_written - before
    # The silver table decides which record of a sample counts: the first one
    # stored. A replay of that record is still it; another record is a duplicate.
    sources = await silver_sources(pool, [r.event_id for r in rows])
    batch.samples = [
        r
        for r in rows
        if sources.get(r.event_id) == (r.source_topic, r.source_partition, r.source_offset)
    ]
    stats.duplicates += len(rows) - len(batch.samples)


async def _set_aside(
    rejections: list[Rejection], rejected: PostgresSink[Any], now: datetime
) -> None:
    for n, rejection in enumerate(rejections):
        record = rejection.record
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        stats.rejected += 1
        stats.last_rejection = f"{where}: {rejection.reason}"
        # A flood of bad records must not turn into a flood of log lines.
        if n < LOGGED_REJECTIONS_PER_BATCH:
            log.warning("rejected record %s: %s", where, rejection.reason)
        await dead_letters.send(
            key=record.key,
            value=record.value or b"",
            headers=[
                ("hoststream-reason", rejection.reason.encode()),
                ("hoststream-source", where.encode()),
            ],
        )
    if len(rejections) > LOGGED_REJECTIONS_PER_BATCH:
        log.warning(
            "rejected %d more records of this batch; all are in silver.rejected",
            len(rejections) - LOGGED_REJECTIONS_PER_BATCH,
        )
    await rejected.write([rejected_row(r, now) for r in rejections])
    await rejected.flush()
