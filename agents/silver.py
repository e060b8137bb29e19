"""The silver agent: validate and normalise samples; set bad records aside."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from agents.batch import Batch
from app.core import app, settings
from app.stats import stats
from app.topics import dead_letters, gold_batches, silver_batches
from schemas.rows import (
    Limits,
    Rejection,
    SilverRow,
    dead_letter,
    first_copies,
    rejected_row,
    validate_batch,
)
from sinks.base import RowsRefused
from sinks.medallion import REJECTED, SILVER, silver_sources
from sinks.postgres import PostgresSink, connect, ensure_schema

log = logging.getLogger(__name__)

LOGGED_REJECTIONS_PER_BATCH = 10

LIMITS = Limits(
    max_future_skew_s=settings.max_future_skew_s,
    max_id_chars=settings.max_id_chars,
    max_text_chars=settings.max_text_chars,
)


@app.agent(silver_batches)
async def validate_samples(batches: Any) -> None:
    """Write each batch's valid samples to ``silver.silver_performance``.

    A record that fails validation, or whose row PostgreSQL refuses, goes to
    ``silver.rejected`` and the dead-letter topic with the reason; it never stops
    the worker. The first copy of a sample in Kafka order is the one stored and
    passed to gold; a later copy (same ``event_id``, another record) is a duplicate.
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
    rows, rejections = validate_batch(batch.records, now, LIMITS)
    # Two copies of a sample in one batch: the first in Kafka order is the one stored,
    # so the one gold counts is the same however the records were batched.
    first = first_copies(rows)
    stats.duplicates += len(rows) - len(first)
    rows = first
    before = silver.rows_written
    try:
        await silver.write(rows)
    except RowsRefused as refused:
        rows, more = _refused_rows(batch, rows, refused)
        rejections += more
    await silver.flush()
    stats.silver_rows += silver.rows_written - before
    if rejections:
        await _set_aside(rejections, rejected, now)
    # The silver table decides which record of a sample counts: the first one
    # stored. A replay of that record is still it; another record is a duplicate.
    sources = await silver_sources(pool, [r.event_id for r in rows])
    batch.samples = [
        r
        for r in rows
        if sources.get(r.event_id) == (r.source_topic, r.source_partition, r.source_offset)
    ]
    stats.duplicates += len(rows) - len(batch.samples)


def _refused_rows(
    batch: Batch, rows: list[SilverRow], refused: RowsRefused
) -> tuple[list[SilverRow], list[Rejection]]:
    """Split ``rows`` into those written and rejections for those PostgreSQL refused."""
    reasons = {r.index: r.reason for r in refused.refused}
    records = {(r.partition, r.offset): r for r in batch.records}
    kept = [row for i, row in enumerate(rows) if i not in reasons]
    rejections = [
        Rejection.of(
            records[rows[i].source_partition, rows[i].source_offset],
            f"PostgreSQL refused its silver row: {reason}",
        )
        for i, reason in reasons.items()
    ]
    return kept, rejections


async def _set_aside(
    rejections: list[Rejection], rejected: PostgresSink[Any], now: datetime
) -> None:
    for n, rejection in enumerate(rejections):
        record = rejection.record
        stats.rejected += 1
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        stats.last_rejection = f"{where}: {rejection.reason}"
        # A flood of bad records must not turn into a flood of log lines.
        if n < LOGGED_REJECTIONS_PER_BATCH:
            log.warning("rejected record %s: %s", where, rejection.reason)
    if len(rejections) > LOGGED_REJECTIONS_PER_BATCH:
        log.warning(
            "rejected %d more records of this batch; all are in silver.rejected",
            len(rejections) - LOGGED_REJECTIONS_PER_BATCH,
        )
    rows = [rejected_row(r, now) for r in await _send_dead_letters(rejections)]
    try:
        await rejected.write(rows)
    except RowsRefused as refused:
        # Never seen: rows hold text made safe for PostgreSQL. The record stays in
        # bronze and on the dead-letter topic; its row here says what went wrong.
        await rejected.write(
            [
                replace(
                    rows[r.index],
                    payload="",
                    reason=f"[payload not storable here: {r.reason}] {rows[r.index].reason}",
                )
                for r in refused.refused
            ]
        )
    await rejected.flush()


async def _send_dead_letters(rejections: list[Rejection]) -> list[Rejection]:
    """Send each rejection to the dead-letter topic and wait for the broker; one the
    broker refuses is still recorded in ``silver.rejected``, its reason saying so."""
    deliveries: list[Awaitable[Any]] = []
    for rejection in rejections:
        letter = dead_letter(rejection, settings.dead_letter_max_bytes)
        try:
            deliveries.append(
                await dead_letters.send(key=letter.key, value=letter.value, headers=letter.headers)
            )
        except Exception as exc:  # refused at once (too large, say)
            refused = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            deliveries.append(refused)
    results = await asyncio.gather(*deliveries, return_exceptions=True)
    noted = []
    for rejection, result in zip(rejections, results, strict=True):
        if isinstance(result, Exception):
            log.error("the dead-letter topic refused a rejected record: %r", result)
            rejection = Rejection.of(
                rejection.record, f"[not on the dead-letter topic: {result!r}] {rejection.reason}"
            )
        noted.append(rejection)
    return noted
