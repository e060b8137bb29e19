"""The warehouse against fake-gcs-server and bqemulator: an hour loaded, reloaded and
reloaded with late objects gives exactly its rows; bad records and duplicates are left
out and counted; a bad object stops the load naming its line; a stream that went
through the worker and the lake gives in BigQuery the hourly rows gold has; and the
``hoststream warehouse`` command."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from google.api_core.exceptions import GoogleAPIError

from collector.synthetic import synthetic_document
from config import AllSettings
from schemas.lake import LakeObject, OpenObject, archived, hour_number
from sinks.gcs import GcsBucket
from stack.bigquery import BigQuery
from tests.hostile import BAD_KINDS, Forge
from tests.integration.fixtures import Processes, eventually, run_command, settings_env
from tests.integration.gold_check import drain, produce, sample_message, within_sketch_bound
from tests.integration.test_hostile_records import create_topic
from tests.integration.test_lake import lake_committed
from warehouse.aggregate import aggregate_hour
from warehouse.jobs import PATIENCE_S, REQUEST_TIMEOUT_S, WarehouseError, job_id, run_job
from warehouse.load import BadLakeObject, PlainRecord, ensure_tables, load_hour, query_config
from warehouse.target import HOURLY_TABLE, RAW_TABLE, Warehouse, bigquery_client

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 11, 22, 13, tzinfo=UTC)
Document = dict[str, Any]


@dataclass
class Lake:
    """One test's topic in the stack's bucket, and the warehouse loaded from it."""

    settings: AllSettings
    wh: Warehouse
    client: Any

    @property
    def bucket(self) -> GcsBucket:
        return GcsBucket(self.wh.bucket, self.settings.gcs_emulator_host)

    def put(
        self, partition: int, first_offset: int, values: list[tuple[bytes | None, bytes | None]]
    ) -> str:
        """Write one object of ``HOUR`` holding ``values`` (key, value) from ``first_offset``."""
        run = OpenObject(partition, hour_number(HOUR), first_offset, 0.0)
        now_ms = int(time.time() * 1000)
        for n, (key, value) in enumerate(values):
            record = PlainRecord(self.wh.topic, partition, first_offset + n, key, value, now_ms)
            run.add(record.offset, archived(record)[1])
        lake_object = LakeObject.of(self.wh.topic, run, gzipped=False)
        self.write(lake_object.name, lake_object.data)
        return lake_object.name

    def write(self, name: str, data: bytes) -> None:
        bucket = self.bucket

        async def upload() -> None:
            try:
                await bucket.put(name, data)
            finally:
                await bucket.close()

        asyncio.run(upload())

    def load(self, hour: datetime = HOUR) -> Any:
        report = load_hour(self.client, self.bucket, self.wh, hour)
        aggregate_hour(self.client, self.wh, hour)
        return report

    def rows(self, table: str) -> list[dict[str, Any]]:
        query = f"SELECT * FROM `{self.wh.table(table)}`"
        return [dict(row) for row in self.client.query(query, job_retry=None).result()]


@pytest.fixture
def lake(stack_settings: AllSettings) -> Iterator[Lake]:
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.model_copy(
        update={"topic": f"machine_metrics_{suffix}", "bigquery_dataset": f"test_{suffix}"}
    )
    wh = Warehouse(
        project=settings.gcp_project,
        dataset=settings.bigquery_dataset,
        bucket=settings.gcs_bucket,
        topic=settings.topic,
    )
    client = bigquery_client(wh, settings.bigquery_emulator_host)
    ensure_tables(client, wh)
    yield Lake(settings, wh, client)
    client.close()


def samples(hosts: list[str], count: int, start: datetime, seed: int) -> list[Document]:
    """``count`` samples of each host, one a minute from ``start``."""
    rng = random.Random(seed)
    return [
        synthetic_document(host, start + timedelta(seconds=60 * n + h), rng)
        for n in range(count)
        for h, host in enumerate(hosts)
    ]


def keyed(documents: list[Document]) -> list[tuple[bytes | None, bytes | None]]:
    return [(d["host_id"].encode(), orjson.dumps(d)) for d in documents]


def expected_raw(documents: list[Document]) -> dict[str, tuple[str, float, float, int]]:
    """event_id -> (host, cpu, memory, bytes sent since the previous sample)."""
    return {
        d["event_id"]: (
            d["host_id"],
            d["cpu"]["percent"],
            d["memory"]["percent"],
            d["network"]["bytes_sent_delta"],
        )
        for d in documents
    }


def stored_raw(lake: Lake) -> dict[str, tuple[str, float, float, int]]:
    rows = lake.rows(RAW_TABLE)
    stored = {
        r["event_id"]: (
            r["host_id"],
            r["cpu_percent"],
            r["memory_percent"],
            r["net_bytes_sent_delta"],
        )
        for r in rows
    }
    assert len(stored) == len(rows), "an event_id is in the raw table twice"
    return stored


def nearest_rank_p95(values: list[float]) -> float:
    return sorted(values)[math.ceil(0.95 * len(values)) - 1]


def expected_hourly(documents: list[Document]) -> dict[str, dict[str, Any]]:
    """host -> the hour's summary, written out from the README's definitions."""
    by_host: dict[str, list[Document]] = {}
    for d in documents:
        by_host.setdefault(d["host_id"], []).append(d)
    summaries = {}
    for host, docs in by_host.items():
        cpu = [d["cpu"]["percent"] for d in docs]
        memory = [d["memory"]["percent"] for d in docs]
        disk = max(max(disk["percent"] for disk in d["disks"]) for d in docs)
        summaries[host] = {
            "sample_count": len(docs),
            "cpu_avg_percent": sum(cpu) / len(cpu),
            "cpu_max_percent": max(cpu),
            "cpu_p95_percent": nearest_rank_p95(cpu),
            "memory_avg_percent": sum(memory) / len(memory),
            "memory_max_percent": max(memory),
            "memory_p95_percent": nearest_rank_p95(memory),
            "net_bytes_sent": sum(d["network"]["bytes_sent_delta"] for d in docs),
            "net_bytes_recv": sum(d["network"]["bytes_recv_delta"] for d in docs),
            "disk_max_percent": disk,
            "cpu_anomaly": nearest_rank_p95(cpu) > 90.0,
            "memory_anomaly": max(memory) > 90.0,
            "disk_anomaly": disk > 90.0,
        }
    return summaries


def hourly_problems(lake: Lake, documents: list[Document]) -> list[str]:
    expected = expected_hourly(documents)
    stored = {r["host_id"]: r for r in lake.rows(HOURLY_TABLE)}
    problems = []
    if set(stored) != set(expected):
        problems.append(f"hosts {sorted(stored)} != {sorted(expected)}")
    for host in sorted(set(stored) & set(expected)):
        row, want = stored[host], expected[host]
        if (row["window_start"], row["window_end"]) != (HOUR, HOUR + timedelta(hours=1)):
            problems.append(f"{host}: window {row['window_start']} - {row['window_end']}")
        for column, value in want.items():
            close = math.isclose(row[column], value, rel_tol=1e-12) if "avg" in column else None
            if not close and row[column] != value:
                problems.append(f"{host}: {column} {row[column]!r} != {value!r}")
    return problems


def test_an_hour_loaded_again_and_with_late_objects_holds_each_sample_once(lake: Lake):
    hosts = [f"host-{n}" for n in range(4)]
    first = samples(hosts, 30, HOUR, seed=1)
    lake.put(0, 0, keyed(first[:70]))
    lake.put(1, 0, keyed(first[70:]))

    report = lake.load()
    assert (report.clean.objects, report.clean.rows, report.clean.hosts) == (2, 120, 4)
    assert stored_raw(lake) == expected_raw(first)
    assert hourly_problems(lake, first) == []

    again = lake.load()
    assert again.clean.rows == 120
    assert stored_raw(lake) == expected_raw(first)
    assert hourly_problems(lake, first) == []

    # Late: more samples of the hour from the same hosts and a new one, after the others.
    late = samples([*hosts, "host-late"], 5, HOUR + timedelta(minutes=40, seconds=30), seed=2)
    lake.put(0, 70, keyed(late))
    report = lake.load()
    assert (report.clean.objects, report.clean.rows, report.clean.hosts) == (3, 145, 5)
    assert stored_raw(lake) == expected_raw(first + late)
    assert hourly_problems(lake, first + late) == []
    # The hours around it are untouched.
    assert {r["sample_time"] >= HOUR for r in lake.rows(RAW_TABLE)} == {True}


def test_bad_records_are_left_out_and_counted_and_the_first_copy_of_a_sample_wins(lake: Lake):
    rng = random.Random(5)
    forge = Forge(rng, ["host-0", "host-1"], datetime.now(UTC))
    bad = [make(forge) for _, make in BAD_KINDS.values() for _ in range(4)]
    good = samples(["host-0", "host-1", "host-2"], 20, HOUR, seed=3)
    # A second copy of a sample with other values, in the same object and in a later one.
    copy = {**good[5], "cpu": {"percent": 1.0, "per_core_percent": [1.0]}}
    other_copy = {**good[30], "cpu": {"percent": 2.0, "per_core_percent": [2.0]}}
    first_object = keyed(good[:40]) + bad[: len(bad) // 2] + keyed([copy])
    second_object = keyed([other_copy]) + bad[len(bad) // 2 :] + keyed(good[40:])
    rng.shuffle(first_object)
    # The first copy (lowest offset) must still be the original: keep it in front.
    first_object.remove(keyed([good[5]])[0])
    first_object.insert(0, keyed([good[5]])[0])
    lake.put(2, 100, first_object)
    lake.put(2, 100 + len(first_object), second_object)

    report = lake.load()
    assert report.clean.records == len(first_object) + len(second_object)
    assert report.clean.rejected_count == len(bad)
    assert report.clean.duplicates == 2
    assert report.clean.rows == len(good)
    assert stored_raw(lake) == expected_raw(good)
    assert hourly_problems(lake, good) == []


def test_an_object_that_is_not_ndjson_stops_the_load_naming_its_line_until_fixed(lake: Lake):
    documents = samples(["host-0", "host-1"], 10, HOUR, seed=4)
    lake.put(0, 0, keyed(documents[:10]))
    lake.load()
    name = lake.put(1, 0, keyed(documents[10:]))
    lines = b"".join(
        archived(PlainRecord(lake.wh.topic, 1, n, k, v, 0))[1]
        for n, (k, v) in enumerate(keyed(documents[10:]))
    )
    broken = lines.split(b"\n")
    broken[2] = broken[2][:40]
    lake.write(name, b"\n".join(broken))

    with pytest.raises(BadLakeObject) as stopped:
        lake.load()
    assert f"gs://{lake.wh.bucket}/{name} line 3: not JSON" in str(stopped.value)
    assert len(lake.rows(RAW_TABLE)) == 10, "a failed load changed the raw table"

    lake.write(name, lines)
    assert lake.load().clean.rows == 20
    assert stored_raw(lake) == expected_raw(documents)


def test_a_retry_of_an_attempt_reattaches_its_jobs_and_reruns_only_a_failed_one(lake: Lake):
    documents = samples(["host-0", "host-1"], 10, HOUR, seed=7)
    lake.put(0, 0, keyed(documents[:10]))
    first = load_hour(lake.client, lake.bucket, lake.wh, HOUR, "run-1")
    lake.client.query(f"DELETE FROM `{lake.wh.table(RAW_TABLE)}` WHERE TRUE").result()
    # The same attempt again (a task retried) on the same lake: its jobs are found done
    # and none runs again, so the rows deleted meanwhile stay deleted.
    again = load_hour(lake.client, lake.bucket, lake.wh, HOUR, "run-1")
    assert again.jobs == first.jobs
    assert lake.rows(RAW_TABLE) == []
    # Once late objects changed the hour's rows, the same attempt loads them.
    lake.put(0, 10, keyed(documents[10:]))
    late = load_hour(lake.client, lake.bucket, lake.wh, HOUR, "run-1")
    assert set(late.jobs).isdisjoint(first.jobs)
    assert stored_raw(lake) == expected_raw(documents)

    # A job that failed runs again under the next id when the attempt is retried.
    lake.client.delete_table(lake.wh.table(RAW_TABLE))
    with pytest.raises(GoogleAPIError, match="raw_performance"):
        load_hour(lake.client, lake.bucket, lake.wh, HOUR, "run-2")
    ensure_tables(lake.client, lake.wh)
    retried = load_hour(lake.client, lake.bucket, lake.wh, HOUR, "run-2")
    stage, replace = retried.jobs
    assert stage.startswith(job_id("stage", lake.wh, HOUR, "run-2"))
    assert replace.startswith(job_id("replace", lake.wh, HOUR, "run-2"))
    assert replace.endswith("_again1")
    assert stored_raw(lake) == expected_raw(documents)


async def test_streaming_and_batch_agree_on_every_host_and_hour(
    pipeline_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings.model_copy(
        update={"lake_max_age_s": 1.0, "bigquery_dataset": f"test_{uuid.uuid4().hex[:8]}"}
    )
    await create_topic(settings)
    start = datetime(2026, 11, 22, 12, 40, tzinfo=UTC)  # crosses 13:00
    hosts = [f"host-{n:02d}" for n in range(8)]
    rng = random.Random(9)
    stream = [
        sample_message(synthetic_document(host, start + timedelta(seconds=20 * n), rng))
        for n in range(150)
        for host in hosts
    ]
    worker = processes.start(settings_env(settings), "worker", name="worker")
    await produce(settings, stream)
    await drain(settings, worker, lambda: processes.log("worker"), timeout_s=120)
    await eventually(lambda: lake_committed(settings), timeout_s=60, what="the lake")
    processes.stop(worker)

    wh = Warehouse(
        settings.gcp_project, settings.bigquery_dataset, settings.gcs_bucket, settings.topic
    )
    client = bigquery_client(wh, settings.bigquery_emulator_host)
    bucket = GcsBucket(wh.bucket, settings.gcs_emulator_host)

    def load_both_hours() -> list[dict[str, Any]]:
        ensure_tables(client, wh)
        for hour in (HOUR - timedelta(hours=1), HOUR):
            load_hour(client, bucket, wh, hour)
            aggregate_hour(client, wh, hour)
        return [dict(r) for r in client.query(f"SELECT * FROM `{wh.table(HOURLY_TABLE)}`").result()]

    warehouse_rows = {
        (r["host_id"], r["window_start"]): r for r in await asyncio.to_thread(load_both_hours)
    }
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        gold = {
            (r["host_id"], r["window_start"]): r
            for r in await database.fetch("SELECT * FROM gold.perf_1h_summary")
        }
    finally:
        await database.close()

    assert len(gold) == 2 * len(hosts)
    assert set(warehouse_rows) == set(gold)
    problems = []
    for key, row in gold.items():
        got = warehouse_rows[key]
        for column in (
            "window_end",
            "sample_count",
            "net_bytes_sent",
            "net_bytes_recv",
            "cpu_max_percent",
            "memory_max_percent",
            "disk_max_percent",
            "memory_anomaly",
            "disk_anomaly",
        ):
            if got[column] != row[column]:
                problems.append(f"{key}: {column} {got[column]!r} != gold's {row[column]!r}")
        for column in ("cpu_avg_percent", "memory_avg_percent"):
            if not math.isclose(got[column], row[column], rel_tol=1e-12):
                problems.append(f"{key}: {column} {got[column]!r} != gold's {row[column]!r}")
        for column in ("cpu_p95_percent", "memory_p95_percent"):
            if not within_sketch_bound(row[column], got[column]):
                problems.append(
                    f"{key}: {column} gold's sketch {row[column]!r} vs exact {got[column]!r}"
                )
        # Gold flags on its sketch's p95: near the threshold, either flag is right.
        if (
            not within_sketch_bound(90.0, got["cpu_p95_percent"])
            and got["cpu_anomaly"] != row["cpu_anomaly"]
        ):
            problems.append(
                f"{key}: cpu_anomaly {got['cpu_anomaly']} != gold's {row['cpu_anomaly']}"
            )
    assert problems == []


def test_the_command_loads_an_hour_and_says_why_when_it_cannot(lake: Lake):
    documents = samples(["host-0", "host-1", "host-2"], 10, HOUR, seed=6)
    name = lake.put(0, 0, keyed(documents))
    env = settings_env(lake.settings)

    done = run_command(env, "warehouse", "load", "--hour", "2026-11-22T13", "--reload-hours", "1")
    assert done.returncode == 0, done.stderr
    assert (
        "2026-11-22T13  1 objects  30 records  30 rows  3 hosts  0 rejected  0 duplicates"
        in done.stdout
    )
    assert len(lake.rows(HOURLY_TABLE)) == 3

    for bad_hour in ("2026-11-22T25", "yesterday"):
        done = run_command(env, "warehouse", "load", "--hour", bad_hour)
        assert done.returncode == 2
        assert (
            done.stderr.strip().splitlines()[-1]
            == f"hoststream: {bad_hour!r} is not an hour like 2026-11-22T10 (UTC)"
        )
    done = run_command(
        env, "warehouse", "backfill", "--from", "2026-11-22T13", "--to", "2026-11-22T12"
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1] == "hoststream: 2026-11-22T12 is before 2026-11-22T13"
    )

    lake.write(name, b'{"topic": 1}\n')
    done = run_command(
        env, "warehouse", "backfill", "--from", "2026-11-22T13", "--to", "2026-11-22T13"
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"hoststream: bad lake object gs://{lake.wh.bucket}/{name} line 1: ")
    )

    away = {**env, "HOSTSTREAM_GCS_EMULATOR_HOST": "http://127.0.0.1:9"}
    done = run_command(away, "warehouse", "load", "--hour", "2026-11-22T13")
    assert done.returncode == 1
    assert (
        done.stderr.strip().splitlines()[-1].startswith("hoststream: GCS does not answer for gs://")
    )
    away = {**env, "HOSTSTREAM_BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9"}
    done = run_command(away, "warehouse", "load", "--hour", "2026-11-22T13")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("hoststream: BigQuery does not answer: ")


def test_a_bigquery_that_stops_answering_fails_a_step_in_seconds_not_hours(lake: Lake):
    # Stopped, not gone: its connections stay open and nothing answers on them.
    bigquery = BigQuery(lake.settings, echo=print)
    pid = bigquery.recorded_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(WarehouseError, match="BigQuery did not answer about job"):
            run_job(lake.client, lake.wh, f"stopped_{uuid.uuid4().hex}", query_config("SELECT 1"))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert time.monotonic() - started < PATIENCE_S + 2 * REQUEST_TIMEOUT_S
    # Back: the same hour loads.
    lake.put(0, 0, keyed(samples(["host-0"], 3, HOUR, seed=5)))
    assert lake.load().clean.rows == 3
