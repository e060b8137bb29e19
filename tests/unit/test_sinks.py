import pytest

from sinks.memory import ListSink


async def test_list_sink_keeps_the_first_row_of_each_key_once_flushed():
    sink: ListSink[tuple[str, int]] = ListSink(key=lambda row: row[0])
    await sink.write([("a", 1), ("b", 1)])
    assert sink.rows == []
    await sink.flush()
    await sink.write([("a", 2), ("c", 1)])
    await sink.close()
    assert sink.rows == [("a", 1), ("b", 1), ("c", 1)]


async def test_a_closed_sink_refuses_writes():
    async with ListSink(key=lambda row: row) as sink:
        await sink.write([1])
    assert sink.rows == [1]
    with pytest.raises(RuntimeError, match="closed"):
        await sink.write([2])
