"""A batch of Kafka records on its way through the pipeline's stages.

The consumer hands each fetch of the metrics topic to the pipeline as one batch
(runtime/consumer.py); the pipeline passes it from stage to stage over in-memory
channels (runtime/pipeline.py). Its records are acknowledged (so Faust may commit
their offsets) only when ``done`` resolves: after every sink flushed what the stages
wrote of them (runtime/checkpoint.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import faust
from faust.streams import _current_event

from runtime.consumer import BatchingConsumer, Records
from schemas.rows import SilverRow

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 70


@dataclass(eq=False)
class Batch:
    """Records of one fetch and what the stages made of them."""

    records: Records
    """Kafka records as aiokafka fetched them, in the order they were read."""
    done: asyncio.Future[None]
    room: asyncio.Semaphore
    """The pipeline's room: the batch holds one place in it until :meth:`free_room`."""
    consumer: BatchingConsumer = field(repr=False)
    samples: list[SilverRow] = field(default_factory=list)
    """Silver rows gold aggregates: valid, and the first copy of each sample."""
    closed_hosts: dict[str, int] = field(default_factory=dict)
    """Host -> its partition, for the hosts of the batch whose state holds closed windows
    (closed by this batch, or by one not committed yet): the alerts stage judges them."""
    _events: dict[int, faust.Event] = field(default_factory=dict, repr=False)
    """Partition -> event of its last record; gold asks once per host and table."""

    _holds_room: bool = field(default=True, repr=False)

    @classmethod
    def of(cls, records: Records, room: asyncio.Semaphore, consumer: BatchingConsumer) -> Batch:
        """A batch of ``records`` taking a place in ``room`` (acquired by the caller)."""
        return cls(
            records=records,
            done=asyncio.get_running_loop().create_future(),
            room=room,
            consumer=consumer,
        )

    def free_room(self) -> None:
        """Give the batch's place in the pipeline to the next one (once; later calls
        do nothing)."""
        if self._holds_room:
            self._holds_room = False
            self.room.release()

    def drop_payloads(self) -> None:
        """Forget the records' keys and values once every stage has processed them.

        What waits for the checkpoint needs only their positions (to acknowledge them)
        and one event per partition (the checkpoint's table writes take their partition
        from it): at 20,000 records/s a 5 s checkpoint would otherwise hold 100,000
        values, most of the worker's memory.
        """
        for partition in {r.partition for r in self.records}:
            self._event_of(partition)
        for r in self.records:
            r.key = r.value = None

    def finish(self, failure: BaseException | None = None) -> None:
        """Resolve ``done``: every sink flushed the batch, or a stage failed on it.
        A batch abandoned at a rebalance is resolved already and stays so."""
        if self.done.done():
            return
        if failure is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(failure)

    def abandon(self) -> None:
        """Give the batch up: its records are read again from the committed offsets."""
        self.done.cancel()

    @property
    def abandoned(self) -> bool:
        """Given up at a rebalance: its records are read again from the committed offsets."""
        return self.done.cancelled()

    @contextlib.contextmanager
    def on_partition(self, partition: int) -> Iterator[None]:
        """Make Faust table reads and writes use ``partition`` (one of the batch's).

        Faust picks the RocksDB partition a table reads and writes, and a write's
        changelog partition, from the event being processed. A batch has no single
        event, and its stages run on in-memory channels; this sets it explicitly, to
        an event of the batch's last record from ``partition``.
        """
        token = _current_event.set(weakref.ref(self._event_of(partition)))
        try:
            yield
        finally:
            _current_event.reset(token)

    def _event_of(self, partition: int) -> faust.Event:
        event = self._events.get(partition)
        if event is None:
            r = next((r for r in reversed(self.records) if r.partition == partition), None)
            if r is None:
                raise KeyError(f"no record of partition {partition} in this batch")
            m = self.consumer.message_of(r)
            event = self._events[partition] = faust.Event(
                self.consumer.app, m.key, m.value, m.headers, m
            )
        return event


def die(stage: str, exc: BaseException) -> NoReturn:
    """Exit at once, without committing: the next worker replays the batch.

    A graceful stop would commit the offsets Faust already holds, and sinks
    retry outages themselves, so an error here is one no retry fixes.
    """
    log.critical("%s failed on a batch; exiting so it is replayed: %r", stage, exc, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)
