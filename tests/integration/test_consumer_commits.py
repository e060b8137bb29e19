"""The batching consumer never commits an offset past a record no handler acknowledged.

The consumer's books (read offsets, gaps, acknowledgements) and Faust 0.15.3's commit
computation are driven one step at a time on the real broker: the test fetches,
seeks and acknowledges in the order a rebalance or a slow batch produces, commits
through Faust after each step, and reads the group's committed offset back from
Kafka. The topic holds transactions, so its offsets have real gaps: each
transaction's commit marker takes an offset no consumer receives.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from app.preflight import ensure_topics
from app.worker import create_app
from config import AllSettings
from runtime.consumer import BatchingConsumer, Fetch, Records, batching_consumer, deliver_in_batches

pytestmark = pytest.mark.integration

RECORDS_PER_TRANSACTION = 5
TRANSACTIONS = 4
"""Offsets 0-4, 6-10, 12-16 and 18-22 hold records; 5, 11, 17 and 23 are markers."""


def records_of(transaction: int) -> list[int]:
    """The offsets of one transaction's records."""
    first = transaction * (RECORDS_PER_TRANSACTION + 1)
    return list(range(first, first + RECORDS_PER_TRANSACTION))


class Driver:
    """One partition's consumer, stepped by hand, and what its handler was given."""

    def __init__(self, settings: AllSettings, consumer: BatchingConsumer, handed: list[Records]):
        self.settings = settings
        self.consumer = consumer
        self.tp = TP(settings.topic, 0)
        self.handed = handed
        self.acknowledged: set[int] = set()

    async def fetch(self) -> Fetch:
        """The next fetch, as aiokafka hands it out; nothing is taken yet."""
        fetch = await self.consumer._fetch(wait_s=5.0)
        assert fetch.records, "the broker returned nothing within 5 s"
        return fetch

    async def take(self, fetch: Fetch) -> list[int]:
        """Take ``fetch`` as the consumer's loop does; the offsets handed to the handler."""
        before = len(self.handed)
        await self.consumer._take(fetch)
        return [r.offset for batch in self.handed[before:] for r in batch]

    async def read(self) -> list[int]:
        return await self.take(await self.fetch())

    def acknowledge(self, offsets: list[int]) -> None:
        """Acknowledge the handed records at ``offsets``, as the sinks do once written."""
        records = [r for batch in self.handed for r in batch if r.offset in offsets]
        assert sorted({r.offset for r in records}) == sorted(offsets)
        self.consumer.acknowledge(records)
        self.acknowledged.update(offsets)

    async def commit(self) -> int | None:
        """Commit through Faust; the group's committed offset in Kafka afterwards.

        Also checks the invariant: the committed offset is not above the lowest
        offset handed to the handler and not acknowledged.
        """
        await self.consumer.commit()
        committed = await self.committed()
        unacknowledged = {r.offset for b in self.handed for r in b} - self.acknowledged
        if committed is not None and unacknowledged:
            assert committed <= min(unacknowledged), (
                f"committed {committed} past unacknowledged records {sorted(unacknowledged)}"
            )
        return committed

    async def committed(self) -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap_servers)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.settings.app_id)
        finally:
            await admin.close()
        found = offsets.get(TopicPartition(self.tp.topic, self.tp.partition))
        return found.offset if found is not None and found.offset >= 0 else None


@pytest.fixture
async def driver(stack_settings: AllSettings, tmp_path: Path) -> AsyncIterator[Driver]:
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.model_copy(
        update={
            "topic": f"commits_{suffix}",
            "app_id": f"hoststream-commits-{suffix}",
            "topic_partitions": 1,
            "batch_max_records": RECORDS_PER_TRANSACTION,
            "data_dir": tmp_path / "worker",
        }
    )
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, transactional_id=f"commits-{suffix}"
    )
    await producer.start()
    try:
        for transaction in range(TRANSACTIONS):
            async with producer.transaction():
                for n in range(RECORDS_PER_TRANSACTION):
                    await producer.send(settings.topic, b"%d-%d" % (transaction, n))
    finally:
        await producer.stop()

    app = create_app(settings)
    handed: list[Records] = []

    async def hand(records: Records) -> None:
        handed.append(records)

    deliver_in_batches(app, app.topic(settings.topic), hand)
    consumer = batching_consumer(app)
    # Only the consumer's thread (its aiokafka consumer) runs: no group membership,
    # no fetcher loop, no periodic commit. The partition is assigned by hand (the one
    # use of Faust's internals here), then made active as Faust's rebalance would.
    thread = consumer._consumer_thread
    await thread.start()
    tp = TopicPartition(settings.topic, 0)
    kafka_consumer = thread._ensure_consumer()

    async def assign() -> None:
        kafka_consumer.assign([tp])

    await thread.call_thread(assign)
    consumer.resume_partitions([TP(settings.topic, 0)])
    try:
        yield Driver(settings, consumer, handed)
    finally:
        await thread.stop()


async def test_out_of_order_acknowledgements_commit_only_across_gaps(driver: Driver) -> None:
    consumer, tp = driver.consumer, driver.tp
    first, second, third, fourth = (records_of(t) for t in range(TRANSACTIONS))

    # A start without a commit: runtime/seeking.py seeks to the earliest offset.
    await consumer.seek(tp, 0)
    consumer.read_from[tp] = 0
    assert await driver.read() == first
    driver.acknowledge(first)
    assert await driver.commit() == 5

    # The third batch is written before the second: the commit crosses the marker at
    # 5, which no record holds, and stops at the second batch.
    assert await driver.read() == second
    assert await driver.read() == third
    driver.acknowledge(third)
    assert await driver.commit() == 6
    assert await driver.commit() == 6

    # Once the second batch is written, the commit crosses it, the marker at 11 and
    # the third batch.
    driver.acknowledge(second)
    assert await driver.commit() == 17
    assert await driver.read() == fourth
    driver.acknowledge(fourth)
    assert await driver.commit() == 23


async def test_a_fetch_overlapped_by_a_seek_leaves_no_gap(driver: Driver) -> None:
    consumer, tp = driver.consumer, driver.tp
    first, second, third, fourth = (records_of(t) for t in range(TRANSACTIONS))
    await consumer.seek(tp, 0)
    consumer.read_from[tp] = 0
    assert await driver.read() == first
    driver.acknowledge(first)
    assert await driver.commit() == 5
    assert await driver.read() == second

    # A rebalance: the next fetch is on its way when Faust seeks the partition back to
    # its committed offset. The fetch is stale; it must leave no trace in the books,
    # least of all a gap from the committed offset to its first record.
    stale = await driver.fetch()
    await consumer.perform_seek()
    assert await driver.take(stale) == []
    assert await driver.commit() == 5

    # The partition is read again from its committed offset; the third batch is
    # written first, and the commit waits for the second.
    assert await driver.read() == second
    assert await driver.read() == third
    driver.acknowledge(third)
    assert await driver.commit() == 6
    driver.acknowledge(second)
    assert await driver.commit() == 17

    # A batch given up and read again: the consumer's own seek back.
    assert await driver.read() == fourth
    await consumer.seek(tp, fourth[0])
    assert await driver.read() == fourth
    assert await driver.commit() == 17
    driver.acknowledge(fourth)
    assert await driver.commit() == 23


async def test_a_fetch_dropped_when_a_seek_moved_nothing_is_read_again(driver: Driver) -> None:
    """A start without a commit: runtime/seeking.py seeks to the earliest offset, then
    Faust seeks to the committed offsets, which leaves a partition without one where
    it is. A fetch taken between the two is dropped as stale; its records must be read
    again, not skipped and booked as a gap that the commit crosses."""
    consumer, tp = driver.consumer, driver.tp
    first, second, *_ = (records_of(t) for t in range(TRANSACTIONS))
    await consumer.seek(tp, 0)
    consumer.read_from[tp] = 0
    stale = await driver.fetch()
    await consumer.perform_seek()
    assert await driver.take(stale) == []
    assert await driver.read() == first
    assert await driver.read() == second
    driver.acknowledge(second)
    assert await driver.commit() is None
    driver.acknowledge(first)
    assert await driver.commit() == 11
