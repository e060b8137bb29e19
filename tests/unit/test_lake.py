"""The lake's pure rules (schemas/lake.py): event hours, lines, cuts, names."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.lake import (
    BadObject,
    LakeLimits,
    LakeObject,
    LakeRecord,
    OpenObject,
    archived,
    event_hour_of,
    hour_number,
    object_name,
    parse_hour,
    parse_object_name,
    read_line,
    read_object,
)


@dataclass
class Record:
    """An aiokafka record's fields the lake reads."""

    value: bytes | None
    key: bytes | None = b"host-1"
    offset: int = 7
    partition: int = 2
    topic: str = "machine_metrics"
    timestamp: int = 1_795_000_000_000


def hour_of(text: str) -> int:
    return hour_number(datetime.fromisoformat(text))


def test_the_event_hour_is_the_samples_in_utc():
    sample = {"timestamp": "2026-11-22T10:59:59.999+00:00"}
    assert event_hour_of(sample, 0) == hour_of("2026-11-22T10:00:00+00:00")
    east = {"timestamp": "2026-11-22T01:30:00+14:00"}
    assert event_hour_of(east, 0) == hour_of("2026-11-21T11:00:00+00:00")


@pytest.mark.parametrize(
    "document",
    [None, [], "text", {"timestamp": 5}, {"timestamp": "yesterday"}, {"timestamp": "2026-11-22"}],
)
def test_without_a_sample_time_with_a_zone_the_event_hour_is_the_kafka_timestamps(document):
    kafka_ms = int(datetime(2026, 11, 22, 13, 5, tzinfo=UTC).timestamp() * 1000)
    assert event_hour_of(document, kafka_ms) == hour_of("2026-11-22T13:00:00+00:00")


@pytest.mark.parametrize("kafka_ms", [-1, 2**63 - 1])
def test_without_either_the_event_hour_is_the_epochs(kafka_ms):
    assert event_hour_of({"timestamp": "0001-01-01T00:00:00+14:00"}, kafka_ms) == 0


def test_a_json_payload_is_embedded_as_it_was_sent_and_read_back_byte_for_byte():
    value = b'{"timestamp": "2026-11-22T10:00:00Z", "cpu": {"percent": 1.50}}'
    hour, line = archived(Record(value))
    assert hour == hour_of("2026-11-22T10:00:00+00:00")
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    fields = orjson.loads(line)
    assert fields["payload"]["cpu"] == {"percent": 1.5}
    assert list(fields) == ["topic", "partition", "offset", "timestamp", "key", "payload"]
    assert read_line(line[:-1]) == LakeRecord(
        "machine_metrics", 2, 7, 1_795_000_000_000, b"host-1", value
    )


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"not json", "payload_text"),
        (b'{"a":\n1}', "payload_text"),  # JSON, but not on one line
        (b"\xff\xfe{", "payload_base64"),
        (b'{"a":"\xff"}', "payload_base64"),
        (b"[" * 1024 + b"]" * 1024, "payload_text"),  # one level deeper in its line: too deep
    ],
)
def test_a_payload_that_is_not_json_on_one_line_is_kept_as_text_or_base64(value, field):
    _, line = archived(Record(value))
    assert field in orjson.loads(line)
    assert read_line(line[:-1]).value == value


def test_a_record_without_value_or_key_and_a_key_that_is_not_utf8_are_kept():
    _, line = archived(Record(None, key=None))
    fields = orjson.loads(line)
    assert fields["key"] is None
    assert not {"payload", "payload_text", "payload_base64"} & set(fields)
    assert read_line(line[:-1]).value is None
    _, line = archived(Record(b"{}", key=b"\xffkey"))
    assert "key_base64" in orjson.loads(line)
    assert read_line(line[:-1]).key == b"\xffkey"


@given(key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=200))
def test_any_record_reads_back_as_it_was(key, value):
    _, line = archived(Record(value, key=key, timestamp=-1))
    record = read_line(line[:-1])
    assert (record.key, record.value, record.timestamp_ms) == (key, value, -1)


@given(
    document=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_json_payload_reads_back_byte_for_byte(document):
    value = orjson.dumps(document)
    _, line = archived(Record(value))
    assert read_line(line[:-1]).value == value


def test_object_names_follow_kafka_connects_layout():
    hour = hour_of("2026-11-22T09:00:00+00:00")
    name = object_name("machine_metrics", 3, 120, hour, gzipped=False)
    assert name == "raw/machine_metrics/dt=2026-11-22/hour=09/machine_metrics+3+120.ndjson"
    assert object_name("t", 0, 0, hour_of("0001-01-01T05:00:00+00:00"), gzipped=True) == (
        "raw/t/dt=0001-01-01/hour=05/t+0+0.ndjson.gz"
    )
    parsed = parse_object_name(name, "machine_metrics")
    assert (parsed.partition, parsed.first_offset, parsed.gzipped) == (3, 120, False)


@pytest.mark.parametrize(
    "name",
    ["raw/t/dt=x/hour=1/t+1.ndjson", "raw/t/x/other+1+2.ndjson", "raw/t/x/t+1+2.json"],
)
def test_a_name_the_lake_would_not_write_is_a_bad_object(name):
    with pytest.raises(BadObject, match="not named"):
        parse_object_name(name, "t")


LIMITS = LakeLimits(max_records=3, max_bytes=100, max_age_s=60, gzip=False)


def test_an_object_takes_records_of_its_hour_up_to_either_limit():
    run = OpenObject(partition=0, hour=5, first_offset=10, opened_at=0.0)
    run.add(10, b"x" * 200)  # the first record is always taken, however large
    assert not run.takes(5, b"y\n", LIMITS)
    run = OpenObject(partition=0, hour=5, first_offset=10, opened_at=0.0)
    run.add(10, b"a" * 40)
    assert run.takes(5, b"b" * 60, LIMITS)
    assert not run.takes(5, b"b" * 61, LIMITS)
    assert not run.takes(6, b"b", LIMITS)
    run.add(11, b"b")
    run.add(12, b"c")
    assert not run.takes(5, b"d", LIMITS)
    assert run.end_offset == 13


def test_a_quiet_object_is_written_only_once_old_enough_and_at_the_partitions_end():
    run = OpenObject(partition=0, hour=5, first_offset=10, opened_at=100.0)
    run.add(10, b"a")
    assert not run.is_quiet(159.0, True, 60)
    assert run.is_quiet(160.0, True, 60)
    assert not run.is_quiet(500.0, False, 60)  # more to read: the next fetch decides


def lake_object(lines: list[bytes], first: int = 10, gzipped: bool = False) -> LakeObject:
    run = OpenObject(partition=2, hour=5, first_offset=first, opened_at=0.0)
    for n, line in enumerate(lines):
        run.add(first + n, line)
    return LakeObject.of("machine_metrics", run, gzipped)


def test_an_object_reads_back_as_its_records_and_gzip_is_deterministic():
    lines = [archived(Record(b'{"n":%d}' % n, offset=10 + n))[1] for n in range(3)]
    plain = lake_object(lines)
    zipped = lake_object(lines, gzipped=True)
    assert zipped.data == lake_object(lines, gzipped=True).data
    assert gzip.decompress(zipped.data) == plain.data
    for made in (plain, zipped):
        name = parse_object_name(made.name, "machine_metrics")
        assert [r.offset for r in read_object(name, made.data)] == [10, 11, 12]
        assert (made.end_offset, made.records) == (13, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{}\n", "line 1: unknown fields|line 1: topic missing"),
        (b"garbage\n", "line 1: not JSON"),
        (b"line without end", "no newline"),
    ],
)
def test_a_bad_object_is_reported_with_its_name_and_line(data, message):
    name = parse_object_name("raw/t/x/machine_metrics+2+10.ndjson", "machine_metrics")
    with pytest.raises(BadObject, match=message):
        list(read_object(name, data))


def test_lines_that_do_not_follow_the_objects_name_make_it_bad():
    good = [archived(Record(b"{}", offset=n))[1] for n in (10, 11)]
    name = parse_object_name("raw/t/x/machine_metrics+2+10.ndjson", "machine_metrics")
    assert len(list(read_object(name, b"".join(good)))) == 2
    with pytest.raises(BadObject, match="line 2: partition 2 offset 10 does not follow"):
        list(read_object(name, good[0] + good[0]))
    other = parse_object_name("raw/t/x/machine_metrics+2+9.ndjson", "machine_metrics")
    with pytest.raises(BadObject, match="line 1: offset 10, not the name's 9"):
        list(read_object(other, b"".join(good)))


def test_an_hour_is_given_as_its_utc_start_or_any_time_within_it():
    ten = hour_of("2026-11-22T10:00:00+00:00")
    assert parse_hour("2026-11-22T10") == ten
    assert parse_hour("2026-11-22T10:59:59") == ten
    assert parse_hour("2026-11-22T11:30+01:00") == ten
    with pytest.raises(ValueError, match="like 2026-11-22T10"):
        parse_hour("22/11/2026 10h")
