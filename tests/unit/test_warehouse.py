"""The warehouse's pure parts: hours, job ids, the cleaning rule on lake lines, and the
shape of the SQL where it matters (no services)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.anomalies import GoldRow, Thresholds
from schemas.lake import LakeRecord
from schemas.rows import Limits, SilverRow
from tests.unit.samples import sample_document
from warehouse.aggregate import aggregate_sql
from warehouse.hours import hour_range, hours_to_reload, parse_hour
from warehouse.jobs import job_id
from warehouse.load import (
    Cleaned,
    clean_object_name,
    clean_records,
    replace_hour_sql,
    staging_load_config,
    staging_table,
)
from warehouse.target import HOURLY_SCHEMA, RAW_SCHEMA, Warehouse

WH = Warehouse(project="proj", dataset="metrics", bucket="lake")
HOUR = datetime(2026, 11, 23, 19, tzinfo=UTC)
NOW = datetime(2026, 11, 29, tzinfo=UTC)
ARRIVED_MS = int(datetime(2026, 11, 23, 19, 0, 5, tzinfo=UTC).timestamp() * 1000)


def test_an_hour_is_parsed_as_its_start_in_utc():
    assert parse_hour("2026-11-22T13") == datetime(2026, 11, 22, 13, tzinfo=UTC)
    assert parse_hour("2026-11-22T13:45:10+01:00") == datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-11-22T25", "2026-11-22 13h", "13h", "", "2026-02-30T01"])
def test_a_bad_hour_is_refused_naming_the_expected_form(text: str):
    with pytest.raises(ValueError, match=r"is not an hour like 2026-11-22T10 \(UTC\)"):
        parse_hour(text)


def test_a_run_reloads_the_hours_before_its_own_oldest_first():
    assert hours_to_reload(HOUR, 3) == [HOUR - timedelta(hours=2), HOUR - timedelta(hours=1), HOUR]
    assert hours_to_reload(HOUR, 1) == [HOUR]
    with pytest.raises(ValueError, match="at least 1"):
        hours_to_reload(HOUR, 0)


def test_an_hour_range_includes_both_ends_across_midnight():
    hours = hour_range(parse_hour("2026-11-22T22"), parse_hour("2026-11-23T01"))
    assert [f"{h:%dT%H}" for h in hours] == ["22T22", "22T23", "23T00", "23T01"]
    assert hour_range(HOUR, HOUR) == [HOUR]
    with pytest.raises(ValueError, match="2026-11-23T18 is before 2026-11-23T19"):
        hour_range(HOUR, HOUR - timedelta(hours=1))


@pytest.mark.parametrize(
    "hour", [datetime(2026, 11, 23, 19), datetime(2026, 11, 23, 19, 30, tzinfo=UTC)]
)
def test_a_naive_or_half_hour_is_refused(hour: datetime):
    with pytest.raises(ValueError, match=r"(has no time zone|is not the start of an hour)$"):
        hours_to_reload(hour, 1)


def test_job_ids_are_the_same_for_the_same_attempt_and_valid_for_bigquery():
    first = job_id("stage", WH, HOUR, "scheduled__2026-11-23T19:00:00+00:00")
    assert first == job_id("stage", WH, HOUR, "scheduled__2026-11-23T19:00:00+00:00")
    assert first != job_id("stage", WH, HOUR, "manual__2026-11-23T19:00:00+00:00")
    assert first != job_id("replace", WH, HOUR, "scheduled__2026-11-23T19:00:00+00:00")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,1024}", first)
    assert "2026112319" in first


def test_the_tables_have_the_medallion_rows_columns_and_types():
    assert [c["name"] for c in RAW_SCHEMA] == [f.name for f in dataclasses.fields(SilverRow)]
    assert [c["name"] for c in HOURLY_SCHEMA] == [f.name for f in dataclasses.fields(GoldRow)]
    raw = {c["name"]: c["type"] for c in RAW_SCHEMA}
    assert raw["sample_time"] == "TIMESTAMP"
    assert raw["net_bytes_sent_delta"] == "INT64"
    assert raw["cpu_percent"] == "FLOAT64"
    assert {c["name"]: c["type"] for c in HOURLY_SCHEMA}["cpu_anomaly"] == "BOOL"


def record(document: dict | bytes | None, offset: int, **changes: object) -> LakeRecord:
    value = document if not isinstance(document, dict) else orjson.dumps(document)
    fields = {
        "topic": "machine_metrics",
        "partition": 0,
        "offset": offset,
        "timestamp_ms": ARRIVED_MS,
        "key": b"db-1",
        "value": value,
        **changes,
    }
    return LakeRecord(**fields)  # type: ignore[arg-type]


def cleaned(*records: LakeRecord, into: Cleaned | None = None) -> Cleaned:
    return clean_records(records, HOUR, Limits(), NOW, into or Cleaned())


def kept(result: Cleaned) -> list[dict]:
    return [orjson.loads(line) for line in result.lines]


def test_valid_samples_become_raw_rows_with_their_kafka_position():
    document = sample_document()
    result = cleaned(record(document, 7))
    (row,) = kept(result)
    assert row["event_id"] == document["event_id"]
    assert row["sample_time"] == "2026-11-23T19:00:00Z"
    assert row["disk_max_percent"] == 90.0
    assert (row["source_partition"], row["source_offset"]) == (0, 7)
    assert (result.records, result.duplicates, dict(result.rejected)) == (1, 0, {})


def test_records_silver_refuses_are_left_out_and_counted_by_reason():
    result = cleaned(
        record(b"{not json", 0),
        record(None, 1),
        record(sample_document(cpu={"percent": 150.0}), 2),
        record(sample_document(), 3, key=b"another-host"),
        record(sample_document(), 4),
    )
    assert len(result.lines) == 1
    assert result.records == 5
    reasons = list(result.rejected)
    assert reasons[0].startswith("not JSON")
    assert reasons[1] == "empty value (tombstone)"
    assert reasons[2] == "cpu.percent = 150.0 is outside 0-100 percent"
    assert reasons[3].startswith("record has key 'another-host', not its host_id 'db-1'")


def test_the_first_copy_of_a_sample_wins_within_and_across_objects():
    document = sample_document()
    later = {**document, "cpu": {"percent": 1.0}}
    result = cleaned(record(document, 0), record(later, 1))
    result = cleaned(record(later, 2, partition=1), into=result)
    (row,) = kept(result)
    assert (row["cpu_percent"], row["source_offset"]) == (42.5, 0)
    assert result.duplicates == 2


def test_a_sample_of_another_hour_is_left_out():
    result = cleaned(record(sample_document(timestamp="2026-11-23T18:59:59Z"), 0))
    assert result.lines == []
    assert list(result.rejected) == ["sample_time outside the object's hour 2026-11-23T19"]


def test_a_sample_is_judged_against_the_moment_it_reached_kafka():
    ahead = sample_document(timestamp="2026-11-23T19:50:00Z")
    # Ten minutes ahead of its Kafka timestamp: too far in the future when it arrived,
    # however long ago that was.
    (reason,) = cleaned(record(ahead, 0, timestamp_ms=ARRIVED_MS)).rejected
    assert "s in the future (more than the allowed 300 s clock skew)" in reason
    # A Kafka timestamp that is no such moment (none, 1970, past the load) counts as now.
    for odd_ms in (-1, 0, 2**53):
        assert len(cleaned(record(ahead, 0, timestamp_ms=odd_ms)).lines) == 1


def test_the_clean_object_and_staging_table_are_named_by_the_hour():
    assert clean_object_name(WH, HOUR) == "clean/machine_metrics/dt=2026-11-23/hour=19.ndjson"
    assert staging_table(WH, HOUR) == "proj.metrics.raw_performance_staging_2026112319"
    load = staging_load_config(WH, HOUR)["load"]
    assert load["sourceUris"] == ["gs://lake/clean/machine_metrics/dt=2026-11-23/hour=19.ndjson"]
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["createDisposition"] == "CREATE_IF_NEEDED"
    assert load["sourceFormat"] == "NEWLINE_DELIMITED_JSON"
    assert load["schema"] == {"fields": RAW_SCHEMA}
    assert load["destinationTable"] == {
        "projectId": "proj",
        "datasetId": "metrics",
        "tableId": "raw_performance_staging_2026112319",
    }


def test_an_hour_is_replaced_in_one_transaction():
    statements = [s.strip() for s in replace_hour_sql(WH, HOUR).split(";") if s.strip()]
    assert statements[0] == "BEGIN TRANSACTION"
    assert statements[1] == (
        "DELETE FROM `proj.metrics.raw_performance` WHERE "
        "sample_time >= TIMESTAMP '2026-11-23 19:00:00+00' AND "
        "sample_time < TIMESTAMP '2026-11-23 20:00:00+00'"
    )
    assert statements[2].startswith("INSERT INTO `proj.metrics.raw_performance` (event_id, ")
    assert statements[2].endswith("FROM `proj.metrics.raw_performance_staging_2026112319`")
    assert statements[3] == "COMMIT TRANSACTION"


def test_the_hourly_aggregate_merges_deltas_with_the_thresholds():
    wh = dataclasses.replace(WH, thresholds=Thresholds(80.0, 85.5, 95.0))
    sql = aggregate_sql(wh, HOUR)
    assert "MERGE `proj.metrics.perf_1h_summary` AS target" in sql
    assert "cpu_p95_percent > 80.0 AS cpu_anomaly" in sql
    assert "memory_max_percent > 85.5 AS memory_anomaly" in sql
    assert "disk_max_percent > 95.0 AS disk_anomaly" in sql
    # Traffic from counter deltas, never from the cumulative counters.
    assert "SUM(CAST(net_bytes_sent_delta AS BIGNUMERIC))" in sql
    assert "CAST(net_bytes_sent AS" not in sql
    assert "SUM(net_bytes_sent)" not in sql
    # A host the hour no longer has loses its row; other hours are left alone.
    assert (
        "WHEN NOT MATCHED BY SOURCE AND "
        "target.window_start >= TIMESTAMP '2026-11-23 19:00:00+00' AND "
        "target.window_start < TIMESTAMP '2026-11-23 20:00:00+00' THEN DELETE"
    ) in sql
