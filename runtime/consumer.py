"""A Faust consumer that hands each fetch of a topic to one handler, as one batch.

Faust delivers records one at a time: for each record its drain loop starts two
tasks and waits for the first to finish (the delivery, or a flow stop), and the
agent's stream turns the event loop a few more times. That caps an agent at
about 8k records/s on this machine kind whatever the agent does, while
hoststream's agents work on batches anyway. For the topics registered with
:func:`deliver_in_batches`, this consumer skips the per-record path: it keeps
Faust's read offsets and gaps for every record and awaits the topic's handler
once per fetch, with aiokafka's records as fetched: building a Faust message
for each would cost more than the rest of a record's delivery. Committing,
rebalancing and table recovery stay Faust's, and :meth:`BatchingConsumer.acknowledge`
keeps Faust's acknowledgement books for these records; every other topic (the
table changelogs) still takes the per-record path.

Unlike Faust, it does not track these records as pending: when partitions are
revoked Faust empties the agents' queues, then waits, without a time limit, for
every pending record to be acknowledged, and a batch emptied from a queue never
is. A batch still in flight at a rebalance or at shutdown is instead given up
unacknowledged, and read again from the committed offset.

Faust commits, per partition, the end of the first run of offsets that are
acknowledged or recorded as gaps (offsets the log does not hold), so a gap that
covers a record makes that record count as written. Gaps are therefore recorded
only from records read in order since the last seek, never from a fetch a seek
overtook, and a seek forgets the gaps it makes uncertain; the commit also waits
until that run starts at the committed offset.

Faust 0.15.3 internals this module relies on, all here and nowhere else: the
consumer's books (``_read_offset``, ``_committed_offset``, ``_acked``,
``_acked_index``, ``_n_acked``, ``_gap``: an interval tree per partition),
``_new_offset``, ``_drain_messages``, ``_wait_next_records``, ``_commit_every``,
``_buffered_partitions``, ``_to_message``, ``_thread`` and ``ack_lock``; of its
aiokafka consumer thread, ``_create_worker_consumer``, ``_fetch_records``,
``_seek_wait`` and ``_ensure_consumer``; aiokafka's ``_fetch_max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import faust
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

Records = list[ConsumerRecord[bytes, bytes]]
BatchHandler = Callable[[Records], Awaitable[None]]

log = logging.getLogger(__name__)


class Fetch(NamedTuple):
    """One fetch's records by partition, and the seeks counted when aiokafka handed
    them out (``_ConsumerThread.fetched_after_seeks``)."""

    records: dict[TP, Records]
    seeks: int


FETCH_MAX_WAIT_MS = 100
"""How long the broker may hold a fetch that found no new records. Faust sets 1500 ms,
and aiokafka sends a partition's next fetch only after the one in flight returns, so a
record could wait that long behind a fetch for quiet partitions: about 1 s of median
latency at any rate."""


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    seeks = 0
    """Seeks so far, of any partition, counted where each takes effect."""
    fetched_after_seeks = 0
    """``seeks`` when the last fetch's records left aiokafka: a seek counted since then
    may have moved a partition back or forth under them."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes a fixed fetch_max_wait_ms; the aiokafka consumer reads it at start.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def _fetch_records(self, *args: Any, **kwargs: Any) -> Any:
        records = await super()._fetch_records(*args, **kwargs)
        self.fetched_after_seeks = self.seeks
        return records

    def seek(self, partition: TP, offset: int) -> None:
        # Runs in the caller's thread (Faust's design), not the consumer's.
        super().seek(partition, offset)
        self.seeks += 1

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await self.call_thread(self._seek_to_committed)
        return committed

    async def _seek_to_committed(self) -> Mapping[TP, int]:
        try:
            committed: Mapping[TP, int] = await self._ensure_consumer().seek_to_committed()
            return committed
        finally:
            self.seeks += 1

    async def _seek_wait(self, consumer: Any, partitions: Mapping[TP, int]) -> None:
        try:
            await super()._seek_wait(consumer, partitions)
        finally:
            self.seeks += 1


class BatchingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering registered topics a fetch at a time."""

    read_from: dict[TP, int]
    """Where each partition was last sought to (runtime/seeking.py): the first offset that
    must be acknowledged before anything is committed when the group has no commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_from = {}
        self._sought: dict[TP, int] = {}
        """Per partition sought since its last batch, the offset sought: the next record
        expected there. Faust's read offset cannot tell it from an offset read."""
        self._refused: dict[TP, int] = {}
        """Per partition refused a commit, the first acknowledged offset last logged."""

    def _new_offset(self, tp: TP) -> int | None:
        # Faust commits past offsets not yet acknowledged in two cases: when the
        # partition has no commit (or 0) it skips its check, and it lets one missing
        # offset at the head pass (faust-streaming #606). A batch given up at a
        # rebalance would then be skipped for good. Acknowledged offsets and gaps
        # (offsets the log does not hold) must start at the committed offset: Faust
        # then commits the end of their first run, which crosses no other offset.
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        start = committed if committed is not None else self.read_from.get(tp)
        gaps = self._gap[tp]
        first = min(acked, default=None)
        if first is not None and gaps:
            first = min(first, gaps.begin())
        if first is not None and start is not None and first > start:
            if self._refused.get(tp) != first:
                self._refused[tp] = first
                log.info(
                    "not committing %s[%d] yet: offsets %d-%d are not acknowledged",
                    tp.topic,
                    tp.partition,
                    start,
                    first - 1,
                )
            return None
        result: int | None = super()._new_offset(tp)
        return result

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._sought_to({partition: offset})

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        # aiokafka seeks only the partitions committed above 0. Its callers (Faust's
        # recovery, runtime/seeking.py, _fetch) stop the flow first, so no fetch is booked
        # between the seek in the consumer's thread and this reset.
        self._sought_to({tp: offset for tp, offset in committed.items() if offset and offset > 0})
        return committed

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        await super().seek_wait(partitions)
        self._sought_to(partitions)

    def _sought_to(self, offsets: Mapping[TP, int]) -> None:
        """Reset the books of partitions just sought: records from the sought offsets
        on will be read (again), so only what is learnt from reading them counts.

        A gap is known only between records read in order from one position; one
        recorded from a position a seek abandoned would count unread records as
        missing from the log. Gaps from the sought offset on are forgotten, with the
        offsets Faust already moved from them into its acknowledged list (those are
        the ones not in its index of acknowledged records)."""
        for partition, offset in offsets.items():
            tp = ensure_TP(partition)
            self._sought[tp] = offset
            self._read_offset[tp] = offset if offset else None  # as Faust's seek
            gaps = self._gap.get(tp)
            if gaps and gaps.end() > offset:
                gaps.chop(offset, gaps.end())
            acked = self._acked.get(tp)
            if acked:
                acked_index = self._acked_index[tp]
                acked[:] = [o for o in acked if o < offset or o in acked_index]

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def _consumer_thread(self) -> _ConsumerThread:
        thread = self._thread
        assert isinstance(thread, _ConsumerThread)
        return thread

    async def _drain_messages(self, fetcher: Any) -> None:
        # Replaces Faust's per-record loop (Consumer._drain_messages), keeping its rules:
        # a record below the partition's read offset was delivered already, and a jump
        # past the read offset is a gap Faust must be told about to commit across it.
        try:
            while not (self.should_stop or fetcher.should_stop):
                await self._take(await self._fetch(wait_s=1.0))
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                # getmany returns at once while records are buffered: let the agents run.
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise

    async def _fetch(self, wait_s: float) -> Fetch:
        """One fetch, by partition: Faust's ``getmany`` without its generator and its
        message per record."""
        records, active = await self._wait_next_records(wait_s)
        seeks = self._consumer_thread.fetched_after_seeks
        if not records or self.should_stop:
            return Fetch({}, seeks)
        if not self.flow_active:
            # As Faust's getmany: a fetch that returns while the flow is stopped
            # (a rebalance) is dropped and its partitions sought back to their commits,
            # or to where they were read from when they have none.
            await self.perform_seek()
            await self._seek_back(records)
            return Fetch({}, seeks)
        fetched: dict[TP, Records] = {}
        for tp, batch in records.items():
            if active is None or tp in active or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                fetched[tp] = batch
        return Fetch(fetched, seeks)

    async def _take(self, fetch: Fetch) -> None:
        """Book ``fetch``'s records as read and hand them over: a batch per topic."""
        if self._consumer_thread.seeks != fetch.seeks:
            # A partition was sought after aiokafka handed these records out (a
            # restart's or a rebalance's seek, while they were on their way to this
            # thread): they are from before the seek, so they must leave no trace in
            # the books. Their read offset would skip the records the seek asked for,
            # and a gap from the sought offset to them would let Faust commit across
            # records never written. They are read again from where the seek put
            # their partitions, which it may not have moved.
            await self._seek_back(fetch.records)
            return
        handlers: dict[str, BatchHandler] = self.app.batch_handlers  # type: ignore[attr-defined]
        batches: dict[str, Records] = {}
        one_by_one: dict[TP, Records] = {}
        # No await until every batch partition is booked: a seek in between would find
        # the books half-updated from a fetch it made stale.
        for tp, fetched in fetch.records.items():
            records, expected = self._unread(tp, fetched)
            if not records:
                continue
            if tp.topic in handlers:
                self._book(tp, records, expected)
                batches.setdefault(tp.topic, []).extend(records)
            else:
                one_by_one[tp] = records
        for tp, records in one_by_one.items():
            await self._deliver_one_by_one(tp, records, fetch.seeks)
        for topic, records in batches.items():
            if not await self._hand_over(handlers[topic], records):
                await self._read_again(records)

    async def _seek_back(self, records: Mapping[TP, Records]) -> None:
        """Put the partitions of a dropped fetch back where reading must go on.

        aiokafka's position has passed the dropped records whether or not a seek
        moved it since: ``seek_to_committed`` leaves a partition that has no commit
        (or 0) where it is, and a seek of the tables' changelogs moves no partition
        of the topic. Left there, the records are never read, and the next fetch
        books them as a gap that commits cross. Each partition goes back to the
        offset it was last sought to, or else to its first record dropped.
        """
        handlers: dict[str, BatchHandler] = self.app.batch_handlers  # type: ignore[attr-defined]
        assigned = self.assignment()
        for tp, records_of_tp in records.items():
            if tp.topic in handlers and tp in assigned and records_of_tp:
                await self.seek(tp, self._sought.get(tp, records_of_tp[0].offset))

    def _unread(self, tp: TP, records: Records) -> tuple[Records, int | None]:
        """The records of ``tp`` not read yet, and the offset expected next (None when
        unknown): the sought offset after a seek, else the one after the last read."""
        sought = self._sought.get(tp)
        last = self._read_offset.get(tp)
        if sought is not None:
            floor = expected = sought
        elif last is not None:
            # Faust's rule: a record below the last one read was delivered already.
            floor, expected = last, last + 1
        else:
            return records, None
        if records[0].offset < floor:
            records = [r for r in records if r.offset >= floor]
        return records, expected

    def _book(self, tp: TP, records: Records, expected: int | None) -> None:
        """Book ``records`` (not empty) as read, and the offsets the log skips before
        and among them as gaps Faust may commit across. Their handler acknowledges
        them (:func:`deliver_in_batches`), so the gaps count whatever the topic's
        ``acks`` says, as :meth:`acknowledge` does."""
        if expected is not None:
            self._add_gap_now(tp, expected, records[0].offset)
        if records[-1].offset - records[0].offset + 1 != len(records):
            for before, after in itertools.pairwise(records):
                self._add_gap_now(tp, before.offset + 1, after.offset)
        self._sought.pop(tp, None)
        self._read_offset[tp] = records[-1].offset

    def _add_gap_now(self, tp: TP, start: int, end: int) -> None:
        """Record offsets ``start`` to ``end`` (excluded) as missing from the log.

        Faust's ``_add_gap`` yields to the loop (a seek could come in between) and
        includes ``end``, the offset of the record after the gap, which would count
        as acknowledged before it is; it also keeps the committed offset itself out of
        a gap, where a transaction marker or a compacted record can leave it missing.
        """
        committed = self._committed_offset[tp]
        if committed is not None:
            start = max(start, committed)
        if start < end:
            gaps = self._gap[tp]
            gaps.addi(start, end)
            gaps.merge_overlaps()

    async def _deliver_one_by_one(self, tp: TP, records: Records, seeks: int) -> None:
        # Faust's own path, for the tables' changelogs.
        for record in records:
            if not self.flow_active:
                return
            message = self._to_message(tp, record)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            if self._consumer_thread.seeks != seeks:
                return  # sought meanwhile: the rest of the fetch is stale
            self._sought.pop(tp, None)
            self._read_offset[tp] = record.offset

    def message_of(self, record: ConsumerRecord[bytes, bytes]) -> Message:
        """The Faust message of a record handed to a batch handler."""
        message: Message = self._to_message(TP(record.topic, record.partition), record)
        return message

    def acknowledge(self, records: Records) -> None:
        """Faust's ``ack`` for records handed to a batch handler: their offsets become
        committable."""
        acked = 0
        tp: TP | None = None
        with ack_lock:
            for record in records:
                if tp is None or record.partition != tp.partition or record.topic != tp.topic:
                    tp = TP(record.topic, record.partition)
                    committed = self._committed_offset[tp]
                    acked_index = self._acked_index[tp]
                    acked_for_tp = self._acked[tp]
                offset = record.offset
                if (committed is None or offset >= committed) and offset not in acked_index:
                    acked_index.add(offset)
                    acked_for_tp.append(offset)
                    acked += 1
            self._n_acked += acked
            notify(self._waiting_for_ack)

    async def _hand_over(self, handler: BatchHandler, records: Records) -> bool:
        """Await ``handler`` unless the flow stops first (a rebalance): False then."""
        delivery = asyncio.ensure_future(handler(records))
        stopping = asyncio.ensure_future(self.suspend_flow.wait())
        try:
            await asyncio.wait([delivery, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if delivery.done():
            delivery.result()
            return True
        delivery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivery
        return False

    async def _read_again(self, records: Records) -> None:
        """Seek back to records read but never handed over, on partitions still ours."""
        first: dict[TP, int] = {}
        for record in records:
            first.setdefault(TP(record.topic, record.partition), record.offset)
        assigned = self.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                await self.seek(tp, offset)


class BatchingTransport(faust_aiokafka.Transport):
    Consumer = BatchingConsumer


class BatchingApp(faust.App):
    """A Faust app whose consumer can deliver topics in batches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        self._closing: list[Callable[[], Awaitable[None]]] = []

    def on_shutdown_close(self, close: Callable[[], Awaitable[None]]) -> None:
        """Await ``close`` when the app shuts down, after its agents have stopped."""
        self._closing.append(close)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        for close in self._closing:
            await close()

    def _new_transport(self) -> Any:
        # Faust picks the transport class from the broker URL's scheme; the
        # batching consumer comes with a transport of its own.
        return BatchingTransport(self.conf.broker_consumer, self)


def batching_consumer(app: faust.App) -> BatchingConsumer:
    """The app's consumer, which :class:`BatchingApp` makes a :class:`BatchingConsumer`."""
    consumer = app.consumer
    assert isinstance(consumer, BatchingConsumer)
    return consumer


def deliver_in_batches(app: BatchingApp, topic: faust.TopicT, handler: BatchHandler) -> None:
    """Subscribe ``app`` to ``topic`` and hand each fetch of it to ``handler``.

    The handler receives the fetch's aiokafka records in offset order per partition.
    It owns acknowledging them (``app.consumer.acknowledge(records)``); until it
    does, Faust commits no offset past them.
    """
    for name in topic.topics:
        app.batch_handlers[name] = handler
    app.topics.add(topic)
