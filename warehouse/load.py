"""Load one event hour of the lake into the raw table, replacing what it held.

The steps, each safe to run again: read the hour's lake objects and keep the valid
samples by silver's own rules (:func:`schemas.rows.validate_batch`), the first Kafka copy
of each ``event_id``; write them as ONE NDJSON object with a name fixed by the hour; load
it into a staging table of the hour (WRITE_TRUNCATE); then in one transaction delete the
hour from the raw table and insert the staging rows. A rerun, or a run after late objects
arrived, gives the hour's rows exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import requests
from google.api_core.exceptions import RetryError
from google.api_core.retry import Retry
from google.cloud import bigquery

from schemas.lake import (
    BadObject,
    LakeRecord,
    ObjectName,
    hour_number,
    hour_prefix,
    parse_object_name,
    read_object,
)
from schemas.rows import Limits, kafka_time, validate_batch
from schemas.validation import EARLIEST_SAMPLE_TIME
from sinks.base import bounded_reason
from sinks.gcs import GcsBucket
from warehouse.hours import HOUR, checked_hour, hour_label
from warehouse.jobs import WarehouseError, job_id, run_job
from warehouse.target import (
    CLEAN_PREFIX,
    HOURLY_SCHEMA,
    HOURLY_TABLE,
    RAW_SCHEMA,
    RAW_TABLE,
    Warehouse,
)

T = TypeVar("T")

GCS_PATIENCE_S = 120.0
"""How long a load waits out GCS not answering (mid-load; at its start it fails at once)
before it fails: a command, or an Airflow task that has retries of its own, must end."""
CHECK_DEADLINE_S = 20.0
"""How long the first BigQuery calls of a run retry before it fails: a command waits
for nobody."""


class BadLakeObject(WarehouseError):
    """An object of the hour that is not what the lake writes; nothing of the hour was
    loaded."""


@dataclass(frozen=True)
class HourClean:
    """What cleaning one hour's lake objects kept and left out."""

    hour: datetime
    objects: int
    records: int
    """Lines in the hour's objects."""
    rows: int
    """Valid samples written, once each."""
    duplicates: int
    """Valid samples left out because an earlier copy (Kafka order) has their event_id."""
    hosts: int
    """Hosts with rows."""
    rejected: dict[str, int]
    """Records left out by silver's rules, by reason."""
    uri: str
    """The cleaned NDJSON: ``gs://bucket/clean/<topic>/dt=YYYY-MM-DD/hour=HH.ndjson``."""
    digest: str
    """SHA-256 of the cleaned NDJSON (hex): what the hour's load jobs load."""

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())


@dataclass(frozen=True)
class HourReport:
    """One hour loaded into the raw table."""

    clean: HourClean
    jobs: list[str]
    """The BigQuery jobs that did it: the staging load, the replacing transaction."""
    seconds: float
    step_seconds: dict[str, float]
    """Seconds of each step: clean, stage (the load job), replace (the transaction)."""


@dataclass
class Cleaned:
    """Silver's verdict on some lake records, in their order (see :func:`clean_records`)."""

    lines: list[bytes] = field(default_factory=list)
    """One NDJSON line per sample kept."""
    records: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)
    """event_ids kept so far."""
    hosts: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class PlainRecord:
    """A Kafka record's fields as plain values (:class:`schemas.rows.KafkaRecord`;
    ``timestamp``: epoch ms): a lake record as silver's rules read it, or a record to
    archive as the lake does."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def clean_records(
    records: Iterable[LakeRecord], hour: datetime, limits: Limits, now: datetime, into: Cleaned
) -> Cleaned:
    """Add the valid samples of ``records`` (Kafka order) to ``into``: silver's rules and
    ``limits``, first copy of an ``event_id`` kept (silver's ``first_copies``, across all
    of the hour's objects), samples of another hour left out.

    Silver judges a sample's timestamp against the worker's clock when it reads it; here
    the record's Kafka timestamp stands in for that moment, so reloading an hour gives the
    same rows whenever it runs. A Kafka timestamp before 2000 or after ``now`` (none, or a
    producer's odd one) is no such moment: ``now`` is used instead.
    """
    end = hour + HOUR
    for lake_record in records:
        into.records += 1
        record = PlainRecord(
            lake_record.topic,
            lake_record.partition,
            lake_record.offset,
            lake_record.key,
            lake_record.value,
            lake_record.timestamp_ms,
        )
        judged_at = kafka_time(record.timestamp) or now
        if not EARLIEST_SAMPLE_TIME <= judged_at <= now:
            judged_at = now
        rows, rejections = validate_batch([record], judged_at, limits)
        for rejection in rejections:
            into.rejected[rejection.reason] += 1
        for row in rows:
            if not hour <= row.sample_time < end:
                into.rejected[f"sample_time outside the object's hour {hour_label(hour)}"] += 1
            elif row.event_id in into.seen:
                into.duplicates += 1
            else:
                into.seen.add(row.event_id)
                into.hosts.add(row.host_id)
                into.lines.append(orjson.dumps(row, option=orjson.OPT_UTC_Z) + b"\n")
    return into


def clean_object_name(wh: Warehouse, hour: datetime) -> str:
    """``clean/<topic>/dt=YYYY-MM-DD/hour=HH.ndjson``: one per hour, replaced by a rerun."""
    folder = hour_prefix(wh.topic, hour_number(hour)).removeprefix("raw/").rstrip("/")
    return f"{CLEAN_PREFIX}/{folder}.ndjson"


def clean_uri(wh: Warehouse, hour: datetime) -> str:
    return f"gs://{wh.bucket}/{clean_object_name(wh, hour)}"


def lake_objects(bucket: GcsBucket, wh: Warehouse, hour: datetime) -> list[str]:
    """The names of the hour's lake objects, in Kafka order (partition, first offset);
    raises :class:`BadLakeObject` for a name the lake would not write."""
    return [name.name for name in _run(bucket, _lake_objects(bucket, wh, checked_hour(hour)))]


def clean_hour(bucket: GcsBucket, wh: Warehouse, hour: datetime) -> HourClean:
    """Read the hour's lake objects, keep the valid samples once each and write them as
    the hour's clean object (see :func:`clean_records`).

    Raises :class:`BadLakeObject` naming the object and line of the first line that is
    not a lake record (nothing is written then), :class:`sinks.gcs.GcsUnreachable` when GCS does
    not answer, :class:`sinks.gcs.BucketUnusable` for a missing or forbidden bucket.
    """
    return _run(bucket, _clean_hour(bucket, wh, checked_hour(hour)))


def _run(bucket: GcsBucket, work: Awaitable[T]) -> T:
    """Run ``work`` from synchronous code (the CLI, Airflow's tasks), closing the bucket's
    HTTP session, which belongs to the loop that made it."""

    async def closing() -> T:
        try:
            return await work
        finally:
            await bucket.close()

    return asyncio.run(closing())


async def _lake_objects(bucket: GcsBucket, wh: Warehouse, hour: datetime) -> list[ObjectName]:
    await bucket.answering()
    names = []
    for name in await bucket.names(hour_prefix(wh.topic, hour_number(hour))):
        try:
            names.append(parse_object_name(name, wh.topic))
        except BadObject as exc:
            raise BadLakeObject(f"bad lake object gs://{bucket.bucket}/{exc}") from None
    return sorted(names)


async def _clean_hour(bucket: GcsBucket, wh: Warehouse, hour: datetime) -> HourClean:
    names = await _lake_objects(bucket, wh, hour)
    now = datetime.now(UTC)
    cleaned = Cleaned()
    for name in names:
        data = await bucket.read(name.name)
        try:
            clean_records(read_object(name, data), hour, wh.limits, now, cleaned)
        except BadObject as exc:
            raise BadLakeObject(
                f"bad lake object gs://{bucket.bucket}/{exc}; nothing of hour "
                f"{hour_label(hour)} was loaded"
            ) from None
    clean_name = clean_object_name(wh, hour)
    data = b"".join(cleaned.lines)
    await bucket.put(clean_name, data)
    return HourClean(
        hour=hour,
        objects=len(names),
        records=cleaned.records,
        rows=len(cleaned.lines),
        duplicates=cleaned.duplicates,
        hosts=len(cleaned.hosts),
        rejected=dict(cleaned.rejected.most_common()),
        uri=f"gs://{bucket.bucket}/{clean_name}",
        digest=hashlib.sha256(data).hexdigest(),
    )


def staging_table(wh: Warehouse, hour: datetime) -> str:
    """The hour's staging table: ``project.dataset.raw_performance_staging_YYYYMMDDHH``."""
    return wh.table(f"{RAW_TABLE}_staging_{checked_hour(hour):%Y%m%d%H}")


def _table_reference(table_id: str) -> dict[str, str]:
    project, dataset, table = table_id.split(".")
    return {"projectId": project, "datasetId": dataset, "tableId": table}


def staging_load_config(wh: Warehouse, hour: datetime) -> dict[str, Any]:
    """The load job ``configuration`` that puts the hour's clean object into its staging
    table, replacing it (the schema given, never autodetected)."""
    return {
        "load": {
            "sourceUris": [clean_uri(wh, checked_hour(hour))],
            "sourceFormat": "NEWLINE_DELIMITED_JSON",
            "schema": {"fields": RAW_SCHEMA},
            "destinationTable": _table_reference(staging_table(wh, hour)),
            "writeDisposition": "WRITE_TRUNCATE",
            "createDisposition": "CREATE_IF_NEEDED",
            "ignoreUnknownValues": False,
        }
    }


def timestamp_literal(moment: datetime) -> str:
    """A BigQuery TIMESTAMP literal. Scripts inline values: bqemulator refuses query
    parameters inside a multi-statement script."""
    return f"TIMESTAMP '{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00'"


def hour_condition(column: str, hour: datetime) -> str:
    """``column`` within the hour: the partition filter of the hour's rows."""
    start = checked_hour(hour)
    return (
        f"{column} >= {timestamp_literal(start)} AND {column} < {timestamp_literal(start + HOUR)}"
    )


def replace_hour_sql(wh: Warehouse, hour: datetime) -> str:
    """One transaction: the hour's raw rows deleted, the staging table's inserted."""
    columns = ", ".join(column["name"] for column in RAW_SCHEMA)
    return (
        "BEGIN TRANSACTION;\n"
        f"DELETE FROM `{wh.table(RAW_TABLE)}` WHERE {hour_condition('sample_time', hour)};\n"
        f"INSERT INTO `{wh.table(RAW_TABLE)}` ({columns})\n"
        f"SELECT {columns} FROM `{staging_table(wh, hour)}`;\n"
        "COMMIT TRANSACTION;"
    )


def query_config(sql: str) -> dict[str, Any]:
    """A query job ``configuration`` in standard SQL."""
    return {"query": {"query": sql, "useLegacySql": False}}


def ensure_tables(client: bigquery.Client, wh: Warehouse) -> None:
    """Create the dataset and both tables where missing: the raw table partitioned by
    hour on ``sample_time``, the hourly one by day on ``window_start``, both clustered by
    host. Raises :class:`WarehouseError` when BigQuery does not answer."""
    # Created ahead: bqemulator ignores time partitioning given on a load job.
    retry = Retry(deadline=CHECK_DEADLINE_S)
    try:
        dataset = bigquery.Dataset(f"{wh.project}.{wh.dataset}")
        dataset.location = wh.location
        client.create_dataset(dataset, exists_ok=True, retry=retry, timeout=10)
        for name, schema, partitioning, column in (
            (RAW_TABLE, RAW_SCHEMA, bigquery.TimePartitioningType.HOUR, "sample_time"),
            (HOURLY_TABLE, HOURLY_SCHEMA, bigquery.TimePartitioningType.DAY, "window_start"),
        ):
            table = bigquery.Table(
                wh.table(name), schema=[bigquery.SchemaField.from_api_repr(c) for c in schema]
            )
            table.time_partitioning = bigquery.TimePartitioning(type_=partitioning, field=column)
            table.clustering_fields = ["host_id"]
            client.create_table(table, exists_ok=True, retry=retry, timeout=10)
    except (requests.RequestException, RetryError) as exc:
        raise WarehouseError(f"BigQuery does not answer: {bounded_reason(str(exc))}") from None


def load_hour(
    client: bigquery.Client,
    bucket: GcsBucket,
    wh: Warehouse,
    hour: datetime,
    attempt_key: str | None = None,
) -> HourReport:
    """Replace the raw table's rows of ``hour`` with the hour's valid samples in the lake.

    ``attempt_key`` names this attempt in the job ids (a DAG run's id): trying again with
    the same key, while the hour's clean rows are the same, re-attaches to its jobs (a
    job done is not run again); rows that changed since (late objects) get jobs of their
    own. None gives a fresh attempt. The tables must exist
    (:func:`ensure_tables`). Raises what :func:`clean_hour` raises, and a BigQuery job's
    error; the raw table then still holds the hour as before.
    """
    started = time.monotonic()
    hour = checked_hour(hour)
    clean = clean_hour(bucket, wh, hour)
    cleaned_at = time.monotonic()
    attempt = f"{attempt_key or uuid.uuid4().hex}_{clean.digest[:12]}"
    load_id = job_id("stage", wh, hour, attempt)
    loaded = run_job(client, wh, load_id, staging_load_config(wh, hour))
    if isinstance(loaded, bigquery.LoadJob) and loaded.output_rows != clean.rows:
        raise WarehouseError(
            f"BigQuery loaded {loaded.output_rows} rows of {clean.rows} from {clean.uri}"
        )
    staged_at = time.monotonic()
    replace_id = job_id("replace", wh, hour, attempt)
    replaced = run_job(client, wh, replace_id, query_config(replace_hour_sql(wh, hour)))
    client.delete_table(staging_table(wh, hour), not_found_ok=True)
    done_at = time.monotonic()
    steps = {
        "clean": cleaned_at - started,
        "stage": staged_at - cleaned_at,
        "replace": done_at - staged_at,
    }
    return HourReport(clean, [loaded.job_id, replaced.job_id], done_at - started, steps)
