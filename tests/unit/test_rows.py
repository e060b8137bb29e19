from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from schemas.rows import bronze_row, rejected_row, validate_batch
from tests.unit.samples import sample_document


@dataclass(frozen=True)
class Record:
    """What the agents read of an aiokafka record."""

    value: bytes | None
    topic: str = "machine_metrics"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"db-1"
    timestamp: int = 1_795_460_400_123


NOW = datetime(2026, 11, 23, 19, 0, 5, tzinfo=UTC)


def test_bronze_keeps_the_record_exactly_and_where_it_came_from():
    raw = orjson.dumps(sample_document())
    row = bronze_row(Record(raw), NOW)
    assert row.payload.encode() == raw
    assert (row.topic, row.partition, row.offset) == ("machine_metrics", 2, 41)
    assert row.message_key == "db-1"
    assert row.kafka_time == datetime(2026, 11, 23, 19, 0, 0, 123000, tzinfo=UTC)
    assert row.ingested_at == NOW


def test_bronze_keeps_a_record_that_is_not_text():
    row = bronze_row(Record(b"\xff\x00garbage"), NOW)
    assert row.payload == "\\xff\\x00garbage"


def test_silver_normalises_percent_to_fractions_and_sums_disks():
    document = sample_document()
    (row,), rejections = validate_batch([Record(orjson.dumps(document))], NOW, 300)
    assert rejections == []
    assert row.event_id == document["event_id"]
    assert row.sample_time == datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    assert row.cpu_percent == 42.5
    assert row.cpu_fraction == 0.425
    assert row.memory_fraction == 0.625
    assert row.disk_used_bytes == 2950
    assert row.disk_total_bytes == 4000
    assert row.disk_max_percent == 90.0
    assert row.net_bytes_recv_per_s == 30.0
    assert (row.source_partition, row.source_offset) == (2, 41)


def test_a_batch_keeps_order_and_sets_bad_records_aside_with_reasons():
    good = [orjson.dumps(sample_document(host_id=f"h{i}")) for i in range(3)]
    batch = [
        Record(good[0]),
        Record(b"{broken", partition=0, offset=7, key=None, timestamp=0),
        Record(good[1]),
        Record(None, partition=0, offset=8, key=b"k", timestamp=0),
        Record(good[2]),
    ]
    rows, rejections = validate_batch(batch, NOW, 300)
    assert [r.host_id for r in rows] == ["h0", "h1", "h2"]
    assert [(r.record.offset, r.reason.split(":")[0]) for r in rejections] == [
        (7, "not JSON"),
        (8, "empty value (tombstone)"),
    ]
    assert rejections[0].record.value == b"{broken"


def test_a_host_without_disks_has_zero_disk_figures():
    (row,), _ = validate_batch([Record(orjson.dumps(sample_document(disks=[])))], NOW, 300)
    assert (row.disk_used_bytes, row.disk_total_bytes, row.disk_max_percent) == (0, 0, 0.0)


def test_a_sample_from_too_far_in_the_future_is_rejected():
    document = sample_document(timestamp="2026-11-23T19:05:06.000000Z")
    rows, (rejection,) = validate_batch([Record(orjson.dumps(document))], NOW, 300)
    assert rows == []
    assert "is 301 s in the future (more than the allowed 300 s clock skew)" in rejection.reason
    within = sample_document(timestamp="2026-11-23T19:05:05.000000Z")
    assert len(validate_batch([Record(orjson.dumps(within))], NOW, 300)[0]) == 1


def test_a_rejected_row_keeps_the_payload_reason_and_coordinates():
    (_, (rejection,)) = validate_batch([Record(b"{oops")], NOW, 300)
    row = rejected_row(rejection, NOW)
    assert (row.topic, row.partition, row.offset) == ("machine_metrics", 2, 41)
    assert row.payload == "{oops"
    assert row.reason.startswith("not JSON")
    assert row.message_key == "db-1"
