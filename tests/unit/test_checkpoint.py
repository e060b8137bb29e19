"""The checkpoint: a batch is finished (its records acknowledged) only once every sink
flushed it; gold's coalescing sinks write the newest row of a window once per flush."""

import asyncio
from datetime import UTC, datetime

from runtime.checkpoint import Checkpoint
from schemas.anomalies import Thresholds, gold_row
from schemas.windows import WindowAggregate
from sinks.coalescing import CoalescingSink
from sinks.memory import ListSink


class Batch:
    """What the checkpoint asks of a batch."""

    def __init__(self) -> None:
        self.finished: list[BaseException | None] = []
        self.done = asyncio.get_running_loop().create_future()

    def finish(self, failure: BaseException | None = None) -> None:
        self.finished.append(failure)

    def abandon(self) -> None:
        self.done.cancel()


def row(host: str, count: int):
    start = int(datetime(2026, 11, 23, 19, tzinfo=UTC).timestamp())
    return gold_row(host, start, 300, WindowAggregate(count=count), Thresholds())


def gold_sinks() -> tuple[dict[str, CoalescingSink], dict[str, ListSink]]:
    stored = {
        name: ListSink(key=lambda r: (r.host_id, r.window_start, r.sample_count))
        for name in ("5min", "1h")
    }
    coalescing = {
        name: CoalescingSink(sink, key=lambda r: (r.host_id, r.window_start), build=lambda r: r)
        for name, sink in stored.items()
    }
    return coalescing, stored


async def hold(sinks: dict[str, CoalescingSink], checkpoint: Checkpoint, batch, windows) -> None:
    """What gold and the pipeline do with a batch: write its rows, then checkpoint it."""
    for name, rows in windows.items():
        await sinks[name].write(rows)
    checkpoint.add(batch)


async def test_with_no_interval_every_batch_is_written_and_finished_at_once():
    sinks, stored = gold_sinks()
    checkpoint = Checkpoint(list(sinks.values()), interval_s=0)
    batch = Batch()
    await hold(sinks, checkpoint, batch, {"5min": [row("a", 1)], "1h": [row("a", 1)]})
    assert checkpoint.due()
    await checkpoint.commit()
    assert batch.finished == [None]
    assert [r.host_id for r in stored["5min"].rows] == ["a"]
    assert [r.host_id for r in stored["1h"].rows] == ["a"]


async def test_batches_wait_for_the_interval_and_only_the_newest_row_of_a_window_is_written():
    sinks, stored = gold_sinks()
    checkpoint = Checkpoint(list(sinks.values()), interval_s=0.2)
    first, second = Batch(), Batch()
    await hold(sinks, checkpoint, first, {"5min": [row("a", 1), row("b", 1)], "1h": []})
    await hold(sinks, checkpoint, second, {"5min": [row("a", 2)], "1h": []})
    assert not checkpoint.due()
    await checkpoint.commit()  # as the timer does once due
    assert first.finished == second.finished == [None]
    assert sorted((r.host_id, r.sample_count) for r in stored["5min"].rows) == [("a", 2), ("b", 1)]


async def test_held_batches_are_not_finished_before_their_rows_are_written():
    sinks, stored = gold_sinks()
    checkpoint = Checkpoint(list(sinks.values()), interval_s=0.2)
    batch = Batch()
    await hold(sinks, checkpoint, batch, {"5min": [row("a", 1)], "1h": []})
    await checkpoint.commit_if_due()
    assert batch.finished == []
    assert stored["5min"].rows == []
    await asyncio.sleep(0.25)
    await checkpoint.commit_if_due()
    assert batch.finished == [None]
    assert [r.host_id for r in stored["5min"].rows] == ["a"]


async def test_a_failed_flush_fails_every_batch_it_covers():
    class Broken(ListSink):
        async def flush(self) -> None:
            raise RuntimeError("disk full")

    sinks, _ = gold_sinks()
    sinks["1h"] = CoalescingSink(Broken(key=lambda r: r), key=lambda r: r, build=lambda r: r)
    checkpoint = Checkpoint(list(sinks.values()), interval_s=0)
    batches = [Batch(), Batch()]
    for batch in batches:
        await hold(sinks, checkpoint, batch, {"5min": [row("a", 1)], "1h": [row("a", 1)]})
    await checkpoint.commit()
    for batch in batches:
        (failure,) = batch.finished
        assert isinstance(failure, RuntimeError)
    assert not checkpoint.due()


async def test_rows_held_at_a_rebalance_are_dropped_and_their_batches_given_up():
    sinks, stored = gold_sinks()
    checkpoint = Checkpoint(list(sinks.values()), interval_s=60)
    batch = Batch()
    await hold(sinks, checkpoint, batch, {"5min": [row("db-1", 3)]})
    await checkpoint.drop()
    assert batch.done.cancelled()
    await hold(sinks, checkpoint, Batch(), {"5min": [row("web-1", 1)]})
    checkpoint.interval_s = 0
    await checkpoint.commit()
    assert [r.host_id for r in stored["5min"].rows] == ["web-1"]
