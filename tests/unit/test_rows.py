from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest

from schemas.rows import (
    Limits,
    Rejection,
    bronze_row,
    dead_letter,
    first_copies,
    rejected_row,
    validate_batch,
)
from schemas.validation import REASON_MAX_CHARS
from schemas.windows import INT64_MAX
from tests.unit.samples import sample_document

LIMITS = Limits(max_future_skew_s=300)


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
    (row,), rejections = validate_batch([Record(orjson.dumps(document))], NOW, LIMITS)
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
        Record(good[0], key=b"h0"),
        Record(b"{broken", partition=0, offset=7, key=None, timestamp=0),
        Record(good[1], key=b"h1"),
        Record(None, partition=0, offset=8, key=b"k", timestamp=0),
        Record(good[2], key=b"h2"),
    ]
    rows, rejections = validate_batch(batch, NOW, LIMITS)
    assert [r.host_id for r in rows] == ["h0", "h1", "h2"]
    assert [(r.record.offset, r.reason.split(":")[0]) for r in rejections] == [
        (7, "not JSON"),
        (8, "empty value (tombstone)"),
    ]
    assert rejections[0].record.value == b"{broken"


def test_a_host_without_disks_has_zero_disk_figures():
    (row,), _ = validate_batch([Record(orjson.dumps(sample_document(disks=[])))], NOW, LIMITS)
    assert (row.disk_used_bytes, row.disk_total_bytes, row.disk_max_percent) == (0, 0, 0.0)


def test_a_sample_from_too_far_in_the_future_is_rejected():
    document = sample_document(timestamp="2026-11-23T19:05:06.000000Z")
    rows, (rejection,) = validate_batch([Record(orjson.dumps(document))], NOW, LIMITS)
    assert rows == []
    assert "is 301 s in the future (more than the allowed 300 s clock skew)" in rejection.reason
    within = sample_document(timestamp="2026-11-23T19:05:05.000000Z")
    assert len(validate_batch([Record(orjson.dumps(within))], NOW, LIMITS)[0]) == 1


def test_a_rejected_row_keeps_the_payload_reason_and_coordinates():
    (_, (rejection,)) = validate_batch([Record(b"{oops")], NOW, LIMITS)
    row = rejected_row(rejection, NOW)
    assert (row.topic, row.partition, row.offset) == ("machine_metrics", 2, 41)
    assert row.payload == "{oops"
    assert row.reason.startswith("not JSON")
    assert row.message_key == "db-1"


def reason_of(document: dict, key: bytes | None = b"db-1", limits: Limits = LIMITS) -> str:
    rows, (rejection,) = validate_batch([Record(orjson.dumps(document), key=key)], NOW, limits)
    assert rows == []
    return rejection.reason


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"host_id": "h" * 2_000_000}, "host_id 'hhhh"),
        ({"host_id": "db\x00-1"}, "host_id 'db\\x00-1' holds control characters"),
        ({"event_id": "e" * 257}, "event_id 'eeee"),
        ({"event_id": "a\nb"}, "holds control characters"),
        ({"hostname": "x" * 1025}, "longer than 1024 characters"),
        ({"hostname": "db\x00.example"}, "hostname 'db\\x00.example' holds control characters"),
        ({"timestamp": "0001-01-01T00:00:00+14:00"}, "outside the calendar in UTC"),
        ({"timestamp": "9999-12-31T23:59:59-14:00"}, "outside the calendar in UTC"),
        ({"timestamp": "1970-01-01T00:00:00Z"}, "is before 2000-01-01"),
        ({"timestamp": "t" * 100_000}, "(100000 characters) is not ISO 8601"),
        ({"schema_version": "v" * 100_000}, "(100000 characters) (this worker accepts 1)"),
    ],
)
def test_records_a_database_could_not_store_are_rejected_with_a_short_reason(overrides, fragment):
    document = sample_document(**overrides)
    key = document["host_id"].encode()
    reason = reason_of(document, key=key)
    assert fragment in reason
    assert len(reason) < 400


def test_a_record_not_keyed_by_its_host_is_rejected_with_how_to_produce_it():
    assert "record has no key, not its host_id 'db-1'" in reason_of(sample_document(), key=None)
    reason = reason_of(sample_document(), key=b"web-1")
    assert "record has key 'web-1', not its host_id 'db-1'" in reason
    assert "keyed by its host_id" in reason


def test_disks_whose_bytes_sum_past_64_bits_are_rejected():
    disk = {
        "mountpoint": "/",
        "total_bytes": INT64_MAX,
        "used_bytes": 1,
        "free_bytes": 0,
        "percent": 1.0,
    }
    reason = reason_of(sample_document(disks=[disk, {**disk, "mountpoint": "/data"}]))
    assert "does not fit in 64 bits" in reason


def test_limits_are_settings():
    reason = reason_of(sample_document(hostname="x" * 11), limits=Limits(max_text_chars=10))
    assert "longer than 10 characters" in reason


def test_a_reason_is_one_bounded_line_whatever_it_quotes():
    rejection = Rejection.of(Record(b""), "a\x00b\n" + "x" * 10_000)
    assert len(rejection.reason) == REASON_MAX_CHARS
    assert "\x00" not in rejection.reason
    assert "\n" not in rejection.reason


def test_the_first_copy_of_a_sample_in_a_batch_is_the_one_kept():
    document = sample_document()
    batch = [Record(orjson.dumps(document), offset=o) for o in (5, 6, 9)]
    rows, _ = validate_batch(batch, NOW, LIMITS)
    (first,) = first_copies(rows)
    assert first.source_offset == 5


def test_bronze_keeps_a_record_whose_kafka_timestamp_is_past_year_9999():
    assert bronze_row(Record(b"x", timestamp=2**62), NOW).kafka_time is None
    assert bronze_row(Record(b"x", timestamp=-1), NOW).kafka_time is None


def test_a_dead_letter_too_large_for_the_broker_is_cut_and_says_so():
    huge = Rejection.of(Record(b"v" * 3_000_000, key=b"k" * 2_000_000), "too big")
    letter = dead_letter(huge, 900_000)
    assert len(letter.key or b"") + len(letter.value) <= 900_000
    headers = dict(letter.headers)
    assert headers["hoststream-truncated"] == b"5000000"
    assert headers["hoststream-reason"] == b"too big"
    assert headers["hoststream-source"] == b"machine_metrics[2]@41"
    small = dead_letter(Rejection.of(Record(b"v"), "bad"), 900_000)
    assert (small.key, small.value) == (b"db-1", b"v")
    assert "hoststream-truncated" not in dict(small.headers)
