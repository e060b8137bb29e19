"""/metrics without services: rejection reasons sorted into classes, the checkpoint's
flush histograms, the lag books; the exposition parses as Prometheus reads it."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from runtime.checkpoint import Checkpoint
from schemas.rows import Limits, validate_batch
from schemas.stats import REJECTION_CLASSES, PipelineStats, rejection_class
from sinks.memory import ListSink
from tests.hostile import BAD_KINDS, Forge
from web.metrics import WorkerMetrics


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


EXPECTED_CLASS = {
    "not JSON": "not_json",
    "empty value": "not_json",
    "invalid UTF-8": "not_json",
    "not an object": "not_json",
    "wrong type": "schema",
    "missing field": "schema",
    "identifier too long": "identity",
    "unknown schema_version": "schema",
    "timestamp at the edges": "timestamp",
    "key is not host_id": "key",
    "disk bytes past 64 bits": "range",
}
"""Kinds of hostile records whose every reason falls in one class; the other kinds
break a record in ways that land in several (a control character raw in the JSON is
no JSON; one escaped in a hostname is an identity problem)."""


def test_every_reason_silver_gives_hostile_records_falls_in_a_named_class():
    now = datetime.now(UTC)
    forge = Forge(random.Random(19), ["h1", "h2"], now)
    for kind, (_, make) in BAD_KINDS.items():
        records = [Record("t", 0, n, *make(forge)) for n in range(200)]
        rows, rejections = validate_batch(records, now, Limits())
        assert rows == [], kind
        classes = Counter(rejection_class(r.reason) for r in rejections)
        assert "other" not in classes, (kind, [r.reason for r in rejections][:3])
        if kind in EXPECTED_CLASS:
            assert set(classes) == {EXPECTED_CLASS[kind]}, (kind, classes)
        else:
            assert set(classes) <= set(REJECTION_CLASSES), (kind, classes)


def test_a_reason_quoting_another_class_words_is_classed_by_its_start():
    quoting = "hostname 'x must be an integer = 5 is negative' holds control characters"
    assert rejection_class(quoting) == "identity"
    assert rejection_class("PostgreSQL refused its silver row: value too long") == (
        "refused_by_postgres"
    )
    assert rejection_class("disks[0].percent = 250.0 is outside 0-100 percent") == "range"
    assert rejection_class("unreadable: KeyError: 'x'") == "other"


def test_rejections_are_counted_in_total_and_by_class():
    stats = PipelineStats()
    for reason in ("not JSON: x", "timestamp '1' is not ISO 8601", "not JSON: y"):
        stats.count_rejection(reason)
    assert stats.rejected == 3
    assert stats.rejected_by_class == {"not_json": 2, "timestamp": 1}


def test_acknowledged_records_move_each_partition_next_offset_forward_only():
    stats = PipelineStats()
    stats.count_acknowledged([Record("t", 0, 5, None, None), Record("t", 1, 9, None, None)])
    stats.count_acknowledged([Record("t", 0, 3, None, None), Record("t", 0, 7, None, None)])
    assert stats.acknowledged == 4
    assert stats.next_offsets == {0: 8, 1: 10}


async def test_each_checkpoint_flush_is_timed_with_the_rows_it_stored_and_parses():
    bronze: ListSink[int] = ListSink(key=lambda r: r)
    silver: ListSink[int] = ListSink(key=lambda r: r)
    metrics = WorkerMetrics({"bronze": bronze, "silver": silver})
    checkpoint = Checkpoint([bronze, silver], interval_s=0, on_flush=metrics.sink_flushed)
    for rows in ([1, 2, 3], [4, 5]):
        await bronze.write(rows)
        await silver.write(rows[:1])
        checkpoint.add(_Batch())
        await checkpoint.commit()
    assert checkpoint.committed_at is not None
    samples = {
        (s.name, s.labels.get("sink"), s.labels.get("le")): s.value
        for family in text_string_to_metric_families(metrics.text().decode())
        for s in family.samples
    }
    assert samples["hoststream_sink_flush_rows_count", "bronze", None] == 2
    assert samples["hoststream_sink_flush_rows_sum", "bronze", None] == 5
    assert samples["hoststream_sink_flush_rows_sum", "silver", None] == 2
    assert samples["hoststream_sink_flush_rows_bucket", "bronze", "1.0"] == 0
    assert samples["hoststream_sink_flush_rows_bucket", "bronze", "10.0"] == 2
    assert samples["hoststream_sink_flush_seconds_count", "silver", None] == 2


async def test_two_workers_in_one_process_keep_separate_figures():
    sink: ListSink[int] = ListSink(key=lambda r: r)
    first, second = WorkerMetrics({"bronze": sink}), WorkerMetrics({"bronze": sink})
    first.sink_flushed(sink, 10, 0.01)
    assert b'hoststream_sink_flush_rows_count{sink="bronze"} 1.0' in first.text()
    assert b'hoststream_sink_flush_rows_count{sink="bronze"}' not in second.text()


class _Batch:
    def __init__(self) -> None:
        self.done = asyncio.get_running_loop().create_future()

    def finish(self, failure: BaseException | None = None) -> None:
        self.done.set_result(failure)
