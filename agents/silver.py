"""The silver stage: validate and normalise samples; set bad records aside."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import faust

from runtime.batch import Batch
from schemas.rows import (
    HostRow,
    Limits,
    RejectedRow,
    Rejection,
    SilverRow,
    dead_letter,
    first_copies,
    host_rows,
    rejected_row,
    validate_batch,
)
from schemas.stats import PipelineStats
from sinks.base import RowsRefused, Sink

log = logging.getLogger(__name__)

LOGGED_REJECTIONS_PER_BATCH = 10

SilverSources = Callable[[Sequence[str]], Awaitable[dict[str, tuple[str, int, int]]]]
"""event_ids -> the Kafka record (topic, partition, offset) each one's silver row came from."""


@dataclass(kw_only=True)
class ValidateSamples:
    """Writes each batch's valid samples to ``silver.silver_performance``.

    A record that fails validation, or whose row PostgreSQL refuses, goes to
    ``silver.rejected`` and the dead-letter topic with the reason; it never stops
    the worker. The first copy of a sample in Kafka order is the one stored and
    passed to gold; a later copy (same ``event_id``, another record) is a duplicate.
    """

    name: ClassVar[str] = "validate_samples"

    silver: Sink[SilverRow]
    rejected: Sink[RejectedRow]
    hosts: Sink[HostRow]
    """``silver.hosts``: each host's newest sample, flushed by the checkpoint."""
    sources: SilverSources
    dead_letters: faust.TopicT
    limits: Limits
    dead_letter_max_bytes: int
    stats: PipelineStats

    async def start(self) -> None:
        pass

    async def process(self, batch: Batch) -> None:
        now = datetime.now(UTC)
        rows, rejections = validate_batch(batch.records, now, self.limits)
        # Two copies of a sample in one batch: the first in Kafka order is the one stored,
        # so the one gold counts is the same however the records were batched.
        first = first_copies(rows)
        self.stats.duplicates += len(rows) - len(first)
        rows = first
        before = self.silver.rows_written
        try:
            await self.silver.write(rows)
        except RowsRefused as refused:
            rows, more = _refused_rows(batch, rows, refused)
            rejections += more
        await self.silver.flush()
        self.stats.silver_rows += self.silver.rows_written - before
        if rejections:
            await self._set_aside(rejections, now)
        # The silver table decides which record of a sample counts: the first one
        # stored. A replay of that record is still it; another record is a duplicate.
        sources = await self.sources([r.event_id for r in rows])
        batch.samples = [
            r
            for r in rows
            if sources.get(r.event_id) == (r.source_topic, r.source_partition, r.source_offset)
        ]
        self.stats.duplicates += len(rows) - len(batch.samples)
        values = {(r.partition, r.offset): r.value for r in batch.records if r.value is not None}
        await self.hosts.write(host_rows(batch.samples, values))

    async def _set_aside(self, rejections: list[Rejection], now: datetime) -> None:
        stats = self.stats
        for n, rejection in enumerate(rejections):
            record = rejection.record
            stats.count_rejection(rejection.reason)
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
        rows = [rejected_row(r, now) for r in await self._send_dead_letters(rejections)]
        try:
            await self.rejected.write(rows)
        except RowsRefused as refused:
            # Never seen: rows hold text made safe for PostgreSQL. The record stays in
            # bronze and on the dead-letter topic; its row here says what went wrong.
            await self.rejected.write(
                [
                    replace(
                        rows[r.index],
                        payload="",
                        reason=f"[payload not storable here: {r.reason}] {rows[r.index].reason}",
                    )
                    for r in refused.refused
                ]
            )
        await self.rejected.flush()

    async def _send_dead_letters(self, rejections: list[Rejection]) -> list[Rejection]:
        """Send each rejection to the dead-letter topic and wait for the broker; one the
        broker refuses is still recorded in ``silver.rejected``, its reason saying so."""
        deliveries: list[Awaitable[Any]] = []
        for rejection in rejections:
            letter = dead_letter(rejection, self.dead_letter_max_bytes)
            try:
                deliveries.append(
                    await self.dead_letters.send(
                        key=letter.key, value=letter.value, headers=letter.headers
                    )
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
                    rejection.record,
                    f"[not on the dead-letter topic: {result!r}] {rejection.reason}",
                )
            noted.append(rejection)
        return noted


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
