"""The bronze agent: every record of the metrics topic, as received, into PostgreSQL.

The consumer hands bronze each fetch of the topic as one batch; bronze stores
it, hands it on to silver and gold, and acknowledges its records once all have
written it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime
from typing import Any

from mode.types.signals import BaseSignalT

from agents.batch import Batch, die
from app.consumer import Records, batching_consumer, deliver_in_batches
from app.core import app, settings
from app.stats import stats
from app.topics import metrics_topic, raw_batches, silver_batches
from schemas.rows import bronze_row
from sinks.medallion import BRONZE, postgres_sink

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 3
"""Batches between the consumer and gold's fold at once: bronze writes one while
silver and gold write the ones before it, so each stage's database round trips
overlap, and the consumer fetches no further ahead. Batches gold has folded but
whose live rows wait for gold's next write are not counted."""

_room = asyncio.Semaphore(BATCHES_IN_FLIGHT)
_in_flight: set[Batch] = set()


async def hand_to_bronze(records: Records) -> None:
    """Called by the consumer with each fetch; waits while the pipeline is full."""
    await _room.acquire()
    batch = Batch.of(records, _room)
    batch.done.add_done_callback(functools.partial(_acknowledge, batch))
    _in_flight.add(batch)
    try:
        await raw_batches.send(value=batch)
    except BaseException:
        batch.done.cancel()
        raise


deliver_in_batches(app, metrics_topic, hand_to_bronze)


@app.on_rebalance_complete.connect
async def abandon_batches_in_flight(
    sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any
) -> None:
    """Give up the batches still in flight when partitions move.

    Faust empties the agents' queues when it resumes after a rebalance, so a
    batch waiting in one would never finish and its room in the pipeline would
    be lost for good. None of their records was acknowledged: the consumer reads
    them again from the committed offsets, and every write is idempotent.
    """
    if _in_flight:
        log.warning("rebalance: %d batches in flight will be read again", len(_in_flight))
    for batch in list(_in_flight):
        batch.done.cancel()


@app.agent(raw_batches)
async def store_raw_records(batches: Any) -> None:
    """Write each batch to ``bronze.bronze_performance``, then pass it on.

    A batch is acknowledged only after bronze, silver and gold have written it,
    so offsets are committed after the rows, never before, and a crash replays
    the batch.
    """
    async with postgres_sink(settings.postgres_dsn.get_secret_value(), BRONZE) as sink:
        async for batch in batches:
            if batch.abandoned:
                continue
            try:
                ingested_at = datetime.now(UTC)
                before = sink.rows_written
                await sink.write([bronze_row(r, ingested_at) for r in batch.records])
                await sink.flush()
                stats.bronze_rows += sink.rows_written - before
                await silver_batches.send(value=batch)
            except Exception as exc:
                die("bronze", exc)


def _acknowledge(batch: Batch, done: asyncio.Future[None]) -> None:
    _in_flight.discard(batch)
    batch.free_room()
    if batch.abandoned:
        return
    failure = done.exception()
    if failure is not None:
        die("silver or gold", failure)
    batching_consumer(app).acknowledge(batch.records)
    stats.acknowledged += len(batch.records)
