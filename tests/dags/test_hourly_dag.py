"""The hourly DAG run for real (``dag.test()``) against fake-gcs-server and bqemulator.

Lake objects are written as the lake agent writes them (schemas/lake.py's lines and
names), with duplicates, a record silver rejects, late objects and a broken object; the
tables are read back from the BigQuery emulator. ``dag.test()`` returns a failed DagRun
without raising, so every test checks the run's state.
"""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.lake import archived, hour_number, object_name
from tests.dags.conftest import DATASET, LOG_URL_BASE, REPO, AlertInbox, Emulators, free_port
from tests.unit.samples import sample_document
from warehouse.load import PlainRecord

TOPIC = "machine_metrics"
H10 = datetime(2026, 11, 22, 10, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def sample(host: str, at: datetime, cpu_percent: float, event_id: str | None = None) -> bytes:
    """A valid sample of ``host`` taken at ``at``, as a collector sends it."""
    document = sample_document(
        host_id=host,
        hostname=f"{host}.example",
        timestamp=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        event_id=event_id or uuid.uuid4().hex,
    )
    document["cpu"]["percent"] = cpu_percent
    return orjson.dumps(document)


def write_object(
    emulators: Emulators, partition: int, first_offset: int, values: list[tuple[datetime, bytes]]
) -> str:
    """One lake object of ``partition`` from ``first_offset``: records with the Kafka
    times and values given (all of one event hour), named and written as the lake does."""
    lines, hours = [], set()
    for offset, (kafka_time, value) in enumerate(values, start=first_offset):
        key = orjson.loads(value).get("host_id", "").encode() if value.startswith(b"{") else None
        ms = int(kafka_time.timestamp() * 1000)
        hour, line = archived(PlainRecord(TOPIC, partition, offset, key, value, ms))
        lines.append(line)
        hours.add(hour)
    (hour,) = hours
    name = object_name(TOPIC, partition, first_offset, hour, gzipped=False)
    emulators.upload(name, b"".join(lines))
    return name


def samples_of(
    host: str, first: datetime, count: int, step: timedelta
) -> list[tuple[datetime, bytes]]:
    """``count`` samples of ``host`` from ``first`` every ``step``, each reaching Kafka 2 s
    after it was taken."""
    return [
        (first + n * step + timedelta(seconds=2), sample(host, first + n * step, 10.0 + n))
        for n in range(count)
    ]


@pytest.fixture(scope="session")
def hourly_dag(emulators: Emulators, alerts: AlertInbox) -> Any:
    """The DAG as Airflow parses it, with the session's emulators and alert targets, its
    tasks failing at their first error: the DAG retries after minutes of backoff, which
    ``dag.test()`` would wait out."""
    dag = importlib.import_module("hourly_warehouse").dag
    assert dag.deadline is not None
    # dag.test() of Airflow 3.3.2 looks the deadline alerts up by id, which only the
    # scheduler's serialized DAG has (it fails with "'dict' object has no attribute
    # 'hex'"): the deadline's callback is tested on its own below.
    dag.deadline = None
    for task in dag.tasks:
        task.retries = 0
    return dag


def run(dag: Any, hour: datetime) -> Any:
    """One DagRun of the DAG for ``hour``; returns it (failed or not)."""
    return dag.test(logical_date=hour)


def raw_counts(emulators: Emulators) -> dict[tuple[str, str], int]:
    """Rows of the raw table per (host, hour)."""
    rows = emulators.query(
        f"SELECT host_id, FORMAT_TIMESTAMP('%Y-%m-%dT%H', sample_time) AS hour, COUNT(*) AS n "
        f"FROM `{emulators.project}.{DATASET}.raw_performance` GROUP BY host_id, hour"
    )
    return {(row["host_id"], row["hour"]): row["n"] for row in rows}


def hourly_rows(emulators: Emulators) -> dict[tuple[str, str], tuple[int, float]]:
    """The hourly aggregate per (host, hour): (sample count, CPU maximum)."""
    rows = emulators.query(
        f"SELECT host_id, FORMAT_TIMESTAMP('%Y-%m-%dT%H', window_start) AS hour, "
        f"sample_count, cpu_max_percent "
        f"FROM `{emulators.project}.{DATASET}.perf_1h_summary`"
    )
    keys = [(row["host_id"], row["hour"]) for row in rows]
    assert len(keys) == len(set(keys)), f"an hour of a host has two summary rows: {rows}"
    return {(r["host_id"], r["hour"]): (r["sample_count"], r["cpu_max_percent"]) for r in rows}


def test_a_run_loads_its_hours_once_again_the_same_and_late_objects_once(
    hourly_dag: Any, emulators: Emulators, alerts: AlertInbox
) -> None:
    alerts.clear()
    a = samples_of("web-a", H10, 6, 10 * MINUTE)
    copy_of_second = (a[1][0] + timedelta(seconds=30), a[1][1])  # a producer's retry
    not_a_sample = (H10 + 33 * MINUTE, b'{"schema_version": 1, "host_id": "web-a"}')
    write_object(emulators, 0, 0, [*a, copy_of_second, not_a_sample])
    write_object(emulators, 1, 0, samples_of("web-b", H10 + 5 * MINUTE, 6, 10 * MINUTE))
    # An hour the run reloads (hours 08-10), written before it.
    write_object(emulators, 1, 100, samples_of("web-b", H10 - 30 * MINUTE, 1, MINUTE))

    first = run(hourly_dag, H10)
    assert first.state == "success"
    expected = {("web-a", "2026-11-22T10"): 6, ("web-b", "2026-11-22T10"): 6}
    expected[("web-b", "2026-11-22T09")] = 1
    assert raw_counts(emulators) == expected
    summary = hourly_rows(emulators)
    assert summary == {
        ("web-a", "2026-11-22T10"): (6, 15.0),
        ("web-b", "2026-11-22T10"): (6, 15.0),
        ("web-b", "2026-11-22T09"): (1, 10.0),
    }

    again = run(hourly_dag, H10)
    assert again.state == "success"
    assert raw_counts(emulators) == expected
    assert hourly_rows(emulators) == summary

    # Late: two more samples of hour 10 reach partition 0 after the run, then hour 11's.
    late = samples_of("web-a", H10 + 55 * MINUTE, 2, 2 * MINUTE)
    late = [(t + 20 * MINUTE, value) for t, value in late]
    write_object(emulators, 0, 8, late)
    write_object(emulators, 0, 10, samples_of("web-a", H10 + 65 * MINUTE, 1, MINUTE))
    eleven = run(hourly_dag, H10 + timedelta(hours=1))
    assert eleven.state == "success"
    expected[("web-a", "2026-11-22T10")] = 8
    expected[("web-a", "2026-11-22T11")] = 1
    assert raw_counts(emulators) == expected
    assert hourly_rows(emulators) == {
        ("web-a", "2026-11-22T10"): (8, 15.0),
        ("web-b", "2026-11-22T10"): (6, 15.0),
        ("web-b", "2026-11-22T09"): (1, 10.0),
        ("web-a", "2026-11-22T11"): (1, 10.0),
    }
    assert alerts.slack == []
    assert alerts.mail == []


def test_a_broken_object_fails_the_run_alerts_slack_and_email_and_a_rerun_after_the_fix_loads(
    hourly_dag: Any, emulators: Emulators, alerts: AlertInbox
) -> None:
    alerts.clear()
    hour = datetime(2026, 11, 23, 5, tzinfo=UTC)
    write_object(emulators, 0, 0, samples_of("db-c", hour + 10 * MINUTE, 1, MINUTE))
    good = samples_of("db-d", hour + 20 * MINUTE, 2, MINUTE)
    broken = object_name(TOPIC, 2, 0, hour_number(hour), gzipped=False)
    first_line = archived(PlainRecord(TOPIC, 2, 0, b"db-d", good[0][1], 0))[1]
    emulators.upload(broken, first_line + b'{"topic": "machine_metrics", "partition": 2,\n')

    failed = run(hourly_dag, hour)
    assert failed.state == "failed"
    assert len(alerts.slack) == 1
    assert len(alerts.mail) == 1
    text = alerts.slack[0]["text"]
    mail = alerts.mail[0]
    body = mail.get_content()
    # The hours 03-05 are cleaned as clean[0..2]: the broken object is hour 05's.
    log_url = f"{LOG_URL_BASE}/dags/hourly_warehouse/runs/"
    for said in (text, body):
        assert "DAG: hourly_warehouse" in said
        assert "hour: 2026-11-23T05 (UTC)" in said
        assert "task: clean[2]" in said
        assert broken in said
        assert f"log: {log_url}" in said
        assert "/tasks/clean/mapped/2" in said
    assert mail["Subject"] == "[hoststream] hourly_warehouse 2026-11-23T05: task clean[2] failed"
    assert mail["To"] == "ops@example.com, dba@example.com"
    assert ("db-c", "2026-11-23T05") not in raw_counts(emulators)

    write_object(emulators, 2, 0, good)
    alerts.clear()
    fixed = run(hourly_dag, hour)
    assert fixed.state == "success"
    counts = raw_counts(emulators)
    assert (counts[("db-c", "2026-11-23T05")], counts[("db-d", "2026-11-23T05")]) == (1, 2)
    assert alerts.slack == []
    assert alerts.mail == []


def test_a_missed_deadline_alerts_with_the_run_and_its_page(
    hourly_dag: Any, alerts: AlertInbox
) -> None:
    from alerting import on_deadline_missed

    alerts.clear()
    run_id = "scheduled__2026-11-22T10:00:00+00:00"
    # What Airflow hands a deadline callback: the DagRun as its REST API shows it.
    on_deadline_missed(
        {
            "dag_run": {
                "dag_id": "hourly_warehouse",
                "dag_run_id": run_id,
                "logical_date": "2026-11-22T10:00:00Z",
                "run_after": "2026-11-22T11:00:00Z",
            },
            "deadline": {"id": "d1", "deadline_time": "2026-11-22T12:00:00+00:00"},
        }
    )
    (post,) = alerts.slack
    (mail,) = alerts.mail
    assert mail["Subject"] == (
        "[hoststream] hourly_warehouse 2026-11-22T10: "
        "task (the run: tasks not finished) missed its deadline"
    )
    page = f"{LOG_URL_BASE}/dags/hourly_warehouse/runs/scheduled__2026-11-22T10%3A00%3A00%2B00%3A00"
    assert f"log: {page}" in post["text"]
    assert "detail: deadline 2026-11-22T12:00:00+00:00" in post["text"]


@pytest.mark.parametrize(
    ("hour_partitions", "next_partitions", "minutes_after_end", "ready"),
    [
        ({0, 1}, {0, 1, 2}, 1, True),  # every partition of the hour moved on
        ({0, 1}, {0}, 1, False),  # partition 1 may still write hour H
        (set(), set(), 1, False),  # nothing yet, too early to call the hour empty
        ({0, 1}, {0}, 5, True),  # the hour settled
        (set(), set(), 5, True),
    ],
)
def test_the_lake_is_taken_complete_when_every_partition_moved_on_or_the_hour_settled(
    hourly_dag: Any,
    hour_partitions: set[int],
    next_partitions: set[int],
    minutes_after_end: int,
    ready: bool,
) -> None:
    from hourly_warehouse import lake_ready

    now = H10 + timedelta(hours=1, minutes=minutes_after_end)
    assert lake_ready(hour_partitions, next_partitions, now, H10) is ready


def test_airflow_finds_the_dag_in_the_dags_folder_without_import_errors(
    hourly_dag: Any,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == ["hourly_warehouse"]
    found = bag.get_dag("hourly_warehouse")
    assert found.catchup
    assert found.max_active_runs == 1


def test_a_slack_webhook_away_does_not_stop_the_email(
    hourly_dag: Any, alerts: AlertInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alerting import send_alert

    from warehouse.alerts import FAILED, Alert

    alerts.clear()
    monkeypatch.setenv(
        "AIRFLOW_VAR_HOSTSTREAM_SLACK_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/x"
    )
    send_alert(Alert("hourly_warehouse", H10, "aggregate[0]", f"{LOG_URL_BASE}/x", FAILED))
    assert alerts.slack == []
    (mail,) = alerts.mail
    assert (
        mail["Subject"] == "[hoststream] hourly_warehouse 2026-11-22T10: task aggregate[0] failed"
    )
