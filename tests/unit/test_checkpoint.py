import asyncio
from datetime import UTC, datetime

from agents.gold import LiveRows
from schemas.anomalies import Thresholds, gold_row
from schemas.windows import WindowAggregate
from sinks.memory import ListSink


class Batch:
    """What LiveRows asks of a batch."""

    def __init__(self) -> None:
        self.finished: list[BaseException | None] = []
        self.done = asyncio.get_running_loop().create_future()

    def finish(self, failure: BaseException | None = None) -> None:
        self.finished.append(failure)


def row(host: str, count: int):
    start = int(datetime(2026, 11, 23, 19, tzinfo=UTC).timestamp())
    return gold_row(host, start, 300, WindowAggregate(count=count), Thresholds())


def live(interval_s: float) -> tuple[LiveRows, dict[str, ListSink]]:
    sinks = {
        name: ListSink(key=lambda r: (r.host_id, r.window_start, r.sample_count))
        for name in ("5min", "1h")
    }
    rows = LiveRows(interval_s)
    rows.sinks = sinks
    return rows, sinks


async def test_with_no_interval_every_batch_is_written_and_finished_at_once():
    rows, sinks = live(0)
    batch = Batch()
    rows.hold(batch, {"5min": [row("a", 1)], "1h": [row("a", 1)]})
    assert rows.due()
    await rows.write()
    assert batch.finished == [None]
    assert [r.host_id for r in sinks["5min"].rows] == ["a"]
    assert [r.host_id for r in sinks["1h"].rows] == ["a"]


async def test_batches_wait_for_the_interval_and_only_the_newest_row_of_a_window_is_written():
    rows, sinks = live(0.2)
    first, second = Batch(), Batch()
    rows.hold(first, {"5min": [row("a", 1), row("b", 1)], "1h": []})
    rows.hold(second, {"5min": [row("a", 2)], "1h": []})
    assert not rows.due()
    await rows.write()  # as the timer does once due
    assert first.finished == second.finished == [None]
    assert sorted((r.host_id, r.sample_count) for r in sinks["5min"].rows) == [("a", 2), ("b", 1)]


async def test_held_batches_are_not_finished_before_their_rows_are_written():
    rows, _ = live(0.2)
    batch = Batch()
    rows.hold(batch, {"5min": [row("a", 1)], "1h": []})
    assert batch.finished == []
    await asyncio.sleep(0.25)
    assert rows.due()
    await rows.write()
    assert batch.finished == [None]


async def test_a_failed_write_fails_every_batch_it_covers():
    class Broken(ListSink):
        async def flush(self) -> None:
            raise RuntimeError("disk full")

    rows, sinks = live(0)
    rows.sinks = {**sinks, "1h": Broken(key=lambda r: r)}
    batches = [Batch(), Batch()]
    for batch in batches:
        rows.hold(batch, {"5min": [row("a", 1)], "1h": [row("a", 1)]})
    await rows.write()
    for batch in batches:
        (failure,) = batch.finished
        assert isinstance(failure, RuntimeError)
    assert not rows.due()


async def test_rows_held_at_a_rebalance_are_dropped_and_their_batches_given_up():
    rows, sinks = live(60)
    batch = Batch()
    rows.hold(batch, {"5min": [row("db-1", 3)]})
    rows.drop()
    assert batch.done.cancelled()
    rows.hold(Batch(), {"5min": [row("web-1", 1)]})
    rows.interval_s = 0
    await rows.write()
    assert [r.host_id for r in sinks["5min"].rows] == ["web-1"]
    assert batch.finished == []
