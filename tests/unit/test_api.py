"""The API's pure rules: parameters, host ids, merging live and stored windows, and
the hosts table's rows."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.anomalies import Thresholds, gold_row
from schemas.api import (
    BadRequest,
    LiveWindow,
    is_host_id,
    iso,
    merged_windows,
    parse_time,
    since_time,
    time_range,
    window_name,
)
from schemas.rows import host_rows, validate_batch
from schemas.windows import WindowAggregate
from tests.unit.samples import sample_document
from tests.unit.test_rows import LIMITS, NOW, Record

DAY_S = 86_400.0
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def test_times_are_iso_8601_utc_with_a_z_whatever_zone_they_came_in():
    assert parse_time("from", "2026-11-29T11:00:00+01:00") == T0
    assert iso(parse_time("to", "2026-11-29T10:00:00Z")) == "2026-11-29T10:00:00Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "from: 'yesterday' is not an ISO 8601 timestamp"),
        ("2026-11-29T10:00:00", "from: '2026-11-29T10:00:00' has no time zone"),
        ("2026-02-30T00:00:00Z", "is not an ISO 8601 timestamp"),
        ("0001-01-01T00:00:00+01:00", "is outside the calendar in UTC"),
        ("\x00" * 10_000, "is not an ISO 8601 timestamp"),
    ],
)
def test_a_bad_timestamp_is_refused_in_one_line_saying_why(text: str, message: str):
    with pytest.raises(BadRequest, match=message) as refused:
        parse_time("from", text)
    assert "\n" not in str(refused.value)
    assert len(str(refused.value)) < 200


def test_a_range_defaults_to_the_day_before_now():
    assert time_range(None, None, T0, 7 * DAY_S) == (T0 - timedelta(days=1), T0)
    assert time_range(None, None, T0, 3600) == (T0 - timedelta(hours=1), T0)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-29T10:00:01Z", "2026-11-29T10:00:00Z", "is after to"),
        ("2026-11-01T00:00:00Z", "2026-11-29T10:00:00Z", "more than the 604800 s"),
        (None, "0001-01-01T00:00:00Z", "leaves no room for a default from"),
    ],
)
def test_a_range_backwards_or_too_long_is_refused(start, end, message):
    with pytest.raises(BadRequest, match=message):
        time_range(start, end, T0, 7 * DAY_S)


def test_since_may_not_reach_further_back_than_the_range_limit():
    assert since_time("2026-11-28T10:00:00Z", T0, DAY_S) == T0 - timedelta(days=1)
    with pytest.raises(BadRequest, match="more than the 86400 s"):
        since_time("2026-11-28T09:59:59Z", T0, DAY_S)


def test_windows_are_named_5m_and_1h():
    assert (window_name("5m"), window_name("1h")) == ("5min", "1h")
    with pytest.raises(BadRequest, match="unknown window '5min': use one of 5m, 1h"):
        window_name("5min")


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("db-1", True),
        ("hôte-ü", True),
        ("", False),
        ("x" * 257, False),
        ("a\x00b", False),
        ("a\nb", False),
        ("\udcff", False),  # an invalid percent-escape in a path decodes to this
    ],
)
def test_a_host_id_silver_could_never_accept_is_unknown_without_a_lookup(host, valid):
    assert is_host_id(host, 256) is valid


def row(start: datetime, cpu: float):
    agg = WindowAggregate(count=1, cpu_sum=cpu, cpu_max=cpu)
    return gold_row("db-1", int(start.timestamp()), 300, agg, Thresholds())


def test_the_live_state_wins_over_stored_rows_and_stored_ones_no_longer_live_are_final():
    first, second, third = T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)
    stored = [row(first, 10.0), row(second, 20.0)]
    live = [LiveWindow(row(second, 25.0), closed=True), LiveWindow(row(third, 30.0), False)]
    answers = merged_windows(stored, live)
    assert [(a["window_start"], a["cpu_max_percent"], a["final"]) for a in answers] == [
        ("2026-11-29T10:00:00Z", 10.0, True),
        ("2026-11-29T10:05:00Z", 25.0, True),
        ("2026-11-29T10:10:00Z", 30.0, False),
    ]


def test_a_hosts_row_is_its_newest_sample_with_its_tags():
    older = sample_document(timestamp="2026-11-23T18:59:50.000000Z")
    newer = sample_document(
        timestamp="2026-11-23T19:00:00.000000Z",
        tags=[{"key": "env", "value": "prod"}, {"key": "bad", "value": "a\x00b"}],
    )
    other = sample_document(host_id="web-2", hostname="web-2")
    records = [
        Record(orjson.dumps(newer), offset=1),
        Record(orjson.dumps(older), offset=2),
        Record(orjson.dumps(other), offset=3, key=b"web-2"),
    ]
    rows, rejections = validate_batch(records, NOW, LIMITS)
    assert not rejections
    hosts = host_rows(rows, {(r.partition, r.offset): r.value for r in records if r.value})
    assert [(h.host_id, h.source_offset, orjson.loads(h.tags)) for h in hosts] == [
        ("db-1", 1, {"env": "prod"}),  # the NUL tag left out: PostgreSQL's jsonb refuses it
        ("web-2", 3, {}),
    ]
    assert hosts[0].last_sample_time == datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    assert hosts[0].memory_total_bytes == 16_000
