"""The bronze agent: every record of the metrics topic, as received, into PostgreSQL.

Bronze is the pipeline's only Kafka consumer: it reads batches, stores them,
hands them on to silver and gold, and acknowledges each batch once all have
written it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

from agents.batch import Batch, die
from app.core import app, settings
from app.stats import stats
from app.topics import metrics_topic, silver_batches
from schemas.rows import bronze_row
from sinks.medallion import BRONZE, postgres_sink

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 3
"""Batches between bronze and the end of gold at once: bronze writes one while silver
and gold write the ones before it, so each stage's database round trips overlap."""


@app.agent(metrics_topic)
async def store_raw_records(stream: Any) -> None:
    """Write each batch to ``bronze.bronze_performance``, then pass it on.

    ``noack_take`` leaves acknowledging to us: a batch is acknowledged only
    after bronze, silver and gold have written it, so offsets are committed
    after the rows, never before, and a crash replays the batch.
    """
    in_flight: deque[Batch] = deque()
    async with postgres_sink(settings.postgres_dsn.get_secret_value(), BRONZE) as sink:
        async for events in stream.noack_take(
            settings.batch_max_records, within=settings.batch_max_wait_s
        ):
            batch = Batch.of(events)
            try:
                ingested_at = datetime.now(UTC)
                before = sink.rows_written
                await sink.write([bronze_row(v, o, ingested_at) for v, o in batch.records])
                await sink.flush()
                stats.bronze_rows += sink.rows_written - before
                await silver_batches.send(value=batch)
            except Exception as exc:
                die("bronze", exc)
            # A callback, not the loop, acknowledges: when no record follows, the
            # loop does not turn, and the last batch must still be committed.
            batch.done.add_done_callback(functools.partial(_acknowledge_soon, stream, batch))
            in_flight.append(batch)
            while len(in_flight) >= BATCHES_IN_FLIGHT or (in_flight and in_flight[0].done.done()):
                await asyncio.wait([in_flight.popleft().done])


_acknowledging: set[asyncio.Task[None]] = set()


def _acknowledge_soon(stream: Any, batch: Batch, done: asyncio.Future[None]) -> None:
    failure = done.exception()
    if failure is not None:
        die("silver or gold", failure)
    task = asyncio.ensure_future(_acknowledge(stream, batch))
    # The loop keeps only weak references to tasks: hold it until it ends.
    _acknowledging.add(task)
    task.add_done_callback(_acknowledging.discard)


async def _acknowledge(stream: Any, batch: Batch) -> None:
    for event in batch.events:
        await stream.ack(event)
    stats.acknowledged += len(batch.events)
