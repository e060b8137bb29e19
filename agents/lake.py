"""The lake stage: every record of the metrics topic, as received, into GCS objects.

It reads the topic with a consumer group of its own (``<app_id>-lake``), beside the
medallion's pipeline in the same worker, and commits a partition's offsets only once
the object holding them is in the bucket. The medallion commits every few seconds; an
object collects up to lake_max_records (a minute or more of a partition's records), and
holding the medallion's commits that long would make a crash replay a minute of
PostgreSQL writes. With its own group, each side commits when its own writes are
durable, and memory stays bounded: a partition holds its open object, the one being
written and at most one more cut, then is paused until GCS catches up.

Exactly once, after any crash: a partition's objects are written one after the other,
and each is committed before the next is written. So after a crash the lake holds, past
the committed offset, at most the one object that starts at it; the restarted worker
reads from that offset, cuts its first object there again and writes it under the same
name, replacing it. Cuts made by the rules of :mod:`schemas.lake` give the same object
again; a quiet partition's cut, made on the clock, may give a longer or shorter one, but
always under the same name, so no offset is ever in two objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from runtime.batch import die
from schemas.lake import LakeLimits, LakeObject, LakeStats, OpenObject, archived
from sinks.base import Sink

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 1000
"""Longest wait for records; quiet partitions are looked at at least this often."""
WAITING_OBJECTS = 2
"""Objects of a partition written or waiting to be: at this many it is paused."""
REVOKE_GRACE_S = 5.0
"""How long a partition taken away may still finish the object it is writing."""
COMMIT_BACKOFF_S = 1.0


@dataclass(eq=False)
class _Partition:
    tp: TopicPartition
    open: OpenObject | None = None
    sealed: deque[OpenObject] = field(default_factory=deque)
    """Objects cut and not yet committed, oldest first; the first is being written."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    paused: bool = False
    uploader: asyncio.Task[None] | None = None


@dataclass(kw_only=True)
class ArchiveRecords(ConsumerRebalanceListener):
    """Writes every record of ``topic`` to the lake, a partition's records in objects cut
    by ``limits``, and commits each object's offsets once it is written."""

    name: ClassVar[str] = "archive_raw_records"

    consumer: Callable[[], AIOKafkaConsumer]
    """Makes the lake's consumer (its own group, no auto commit), in the running loop."""
    bucket: Sink[LakeObject]
    topic: str
    limits: LakeLimits
    fetch_max_records: int
    stats: LakeStats
    _partitions: dict[TopicPartition, _Partition] = field(default_factory=dict, init=False)
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False)

    @property
    def pending_bytes(self) -> int:
        """NDJSON bytes read and not yet in the bucket: open, cut and being written."""
        return sum(
            sum(run.size for run in part.sealed) + (part.open.size if part.open else 0)
            for part in self._partitions.values()
        )

    async def run(self) -> None:
        """Read, cut and write until cancelled (the worker stops). An error no retry
        fixes makes the worker exit without committing (see :func:`runtime.batch.die`)."""
        consumer = self._consumer = self.consumer()
        consumer.subscribe([self.topic], listener=self)
        try:
            await consumer.start()
            while True:
                fetched = await consumer.getmany(
                    timeout_ms=POLL_TIMEOUT_MS, max_records=self.fetch_max_records
                )
                for tp, records in fetched.items():
                    self._take(tp, records)
                await self._cut_quiet()
        except Exception as exc:
            die(self.name, exc)
        finally:
            await self._let_go(list(self._partitions.values()), grace_s=0)
            self._partitions.clear()
            await consumer.stop()

    def _take(self, tp: TopicPartition, records: list[Any]) -> None:
        part = self._partitions.get(tp)
        if part is None:
            # Taken away since the fetch; or assigned and fetched before the listener
            # set it up (aiokafka can): then read again from the first record, not lost.
            assert self._consumer is not None
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, records[0].offset)
            return
        now = time.monotonic()
        for record in records:
            hour, line = archived(record)
            run = part.open
            if run is not None and not run.takes(hour, line, self.limits):
                self._cut(part)
                run = None
            if run is None:
                run = part.open = OpenObject(record.partition, hour, record.offset, now)
            run.add(record.offset, line)

    async def _cut_quiet(self) -> None:
        assert self._consumer is not None
        now = time.monotonic()
        for part in list(self._partitions.values()):
            run = part.open
            if run is None or not run.is_quiet(now, True, self.limits.max_age_s):
                continue
            # The position passes transaction markers too, which no record's offset does.
            end = self._consumer.highwater(part.tp)
            try:
                caught_up = end is not None and await self._consumer.position(part.tp) >= end
            except IllegalStateError:  # taken away meanwhile
                continue
            if caught_up and part.open is run:
                self._cut(part)

    def _cut(self, part: _Partition) -> None:
        assert part.open is not None
        part.sealed.append(part.open)
        part.open = None
        part.ready.set()
        self._pace(part)

    def _pace(self, part: _Partition) -> None:
        """Pause a partition whose objects wait for GCS; resume it once they do not."""
        assert self._consumer is not None
        behind = len(part.sealed) >= WAITING_OBJECTS
        if behind != part.paused and not part.closing:
            part.paused = behind
            if behind:
                self._consumer.pause(part.tp)
            else:
                self._consumer.resume(part.tp)
            self.stats.paused_partitions += 1 if behind else -1

    async def _write_objects(self, part: _Partition) -> None:
        """Write the partition's cut objects in order, committing each before the next;
        once the partition is let go, stop after the object being written."""
        try:
            while not part.closing:
                if not part.sealed:
                    part.ready.clear()
                    await part.ready.wait()
                    continue
                run = part.sealed[0]
                lake_object = (
                    await asyncio.to_thread(LakeObject.of, self.topic, run, True)
                    if self.limits.gzip
                    else LakeObject.of(self.topic, run, False)
                )
                await self.bucket.write([lake_object])
                if not await self._commit(part.tp, lake_object.end_offset):
                    return
                part.sealed.popleft()
                self.stats.objects += 1
                self.stats.records += lake_object.records
                self.stats.bytes += len(lake_object.data)
                self._pace(part)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die(self.name, exc)

    async def _commit(self, tp: TopicPartition, offset: int) -> bool:
        """Commit ``offset`` of ``tp``; False when the partition is no longer this
        worker's (its new owner reads from the last commit)."""
        assert self._consumer is not None
        while True:
            try:
                await self._consumer.commit({tp: offset})
                return True
            except (CommitFailedError, IllegalStateError):
                log.info("lake: %s moved before offset %d was committed", tp, offset)
                return False
            except KafkaError as exc:
                log.warning("lake: committing %s at %d failed, retrying: %r", tp, offset, exc)
                await asyncio.sleep(COMMIT_BACKOFF_S)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            part = self._partitions[tp] = _Partition(tp)
            part.uploader = asyncio.create_task(self._write_objects(part))

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Let the partitions taken away finish the object being written (so its new
        owner does not write it again), within a grace period; drop the rest, which
        the new owner reads again from the committed offsets."""
        parts = [self._partitions.pop(tp) for tp in revoked if tp in self._partitions]
        await self._let_go(parts, REVOKE_GRACE_S)

    async def _let_go(self, parts: list[_Partition], grace_s: float) -> None:
        for part in parts:
            part.closing = True
            part.ready.set()
            if part.paused:
                self.stats.paused_partitions -= 1
        tasks = [part.uploader for part in parts if part.uploader is not None]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if parts:
            log.info("lake: let go of partitions %s", sorted(p.tp.partition for p in parts))
