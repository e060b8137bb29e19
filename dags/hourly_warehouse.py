"""hourly_warehouse: each hour of the GCS lake into BigQuery, then its hourly aggregate.

One run per lake hour, named by its logical date (the hour's start, UTC; the run starts
once the hour is over): never by the wall clock, so catchup, a backfill and a rerun of a
run load exactly the hours they name. A run for hour H reloads the hours H-N+1 .. H
(``HOSTSTREAM_WAREHOUSE_RELOAD_HOURS``), which late samples may have reached since.

    wait_for_lake -> create_tables -> clean[h] (h: each hour from the task hours)
        -> load_staging[h] -> replace_hour[h] -> drop_staging[h] and aggregate[h]

The work is warehouse/'s functions; Airflow only orders the steps and retries them.
Each step is idempotent: clean rewrites the hour's one clean object, the staging load
truncates, the replace is one transaction (delete the hour, insert it), the aggregate a
MERGE. BigQuery jobs run under ids fixed by the run, the hour and the rows the clean
step wrote (see :func:`attempt_key`), so a retry re-attaches to its job instead of
running it twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
from airflow.providers.google.cloud.operators.bigquery import (
    BigQueryDeleteTableOperator,
    BigQueryInsertJobOperator,
)
from airflow.sdk import DAG, task
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.timetables.interval import CronDataIntervalTimetable
from alerting import on_deadline_missed, on_task_failure, run_hour

from config import load
from config.warehouse import WarehouseSettings
from schemas.lake import parse_object_name
from sinks.gcs import GcsBucket
from warehouse.aggregate import aggregate_sql
from warehouse.hours import HOUR, hour_label, hours_to_reload, parse_hour
from warehouse.jobs import job_id
from warehouse.load import (
    GCS_PATIENCE_S,
    HourClean,
    clean_hour,
    ensure_tables,
    lake_objects,
    query_config,
    replace_hour_sql,
    staging_load_config,
    staging_table,
)

DAG_ID = "hourly_warehouse"
GCP_CONNECTION = "google_cloud_default"
LAKE_SETTLE = timedelta(minutes=5)
"""After an hour ends, how long until the lake is taken to hold all of it even when no
partition has objects of the next hour yet: a quiet partition's last object is written
HOSTSTREAM_LAKE_MAX_AGE_S (60 s) after its first record. Stragglers are picked up by
the reloads of the following runs."""
DEADLINE = timedelta(hours=1)
"""A run not finished this long after it was queued alerts (see dags/alerting.py)."""

log = logging.getLogger(__name__)


settings = load(WarehouseSettings)
# With the stream's rules: silver's limits, gold's anomaly thresholds.
warehouse = settings.warehouse()


def bucket() -> GcsBucket:
    """The lake's bucket (the emulator's when HOSTSTREAM_GCS_EMULATOR_HOST is set)."""
    return GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host or None, GCS_PATIENCE_S)


def lake_ready(
    hour_partitions: set[int], next_partitions: set[int], now: datetime, hour: datetime
) -> bool:
    """Whether the lake holds all of ``hour``: every partition with objects of the hour
    has moved on to the next one (the lake writes a partition's objects in order), or
    the hour ended :data:`LAKE_SETTLE` ago."""
    moved_on = bool(hour_partitions) and hour_partitions <= next_partitions
    return moved_on or now >= hour + HOUR + LAKE_SETTLE


def attempt_key(run_id: str, clean: HourClean) -> str:
    """What names a step's BigQuery jobs besides the step and the hour: the run, and the
    digest of the hour's clean rows (as ``hoststream warehouse load`` does). A retry sees
    the same lake and gets the same ids, so its job is re-attached (the provider's
    operator keeps the job id of a try in Airflow's task state) rather than run twice; a
    rerun after late objects arrived gets new ones, so the hour is loaded again."""
    return f"{run_id}_{clean.digest[:12]}"


def steps_of(hour: datetime, key: str) -> dict[str, dict[str, Any]]:
    """The BigQuery steps of one cleaned hour, as keyword arguments of the mapped
    operators: the staging load, the replacing transaction, the staging table's drop and
    the aggregate's MERGE."""

    def job(step: str, configuration: dict[str, Any]) -> dict[str, Any]:
        return {"job_id": job_id(step, warehouse, hour, key), "configuration": configuration}

    return {
        "stage": job("stage", staging_load_config(warehouse, hour)),
        "replace": job("replace", query_config(replace_hour_sql(warehouse, hour))),
        "drop": {"deletion_dataset_table": staging_table(warehouse, hour)},
        "merge": job("aggregate", query_config(aggregate_sql(warehouse, hour))),
    }


# Plain functions, one per step: Airflow serializes a map's callable by its source, so
# neither itemgetter nor a closure will do.
def stage_args(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return steps["stage"]


def replace_args(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return steps["replace"]


def drop_args(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return steps["drop"]


def merge_args(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return steps["merge"]


with DAG(
    dag_id=DAG_ID,
    description="Each hour of the GCS lake into BigQuery (raw rows, then the hourly aggregate)",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=settings.warehouse_start,
    catchup=True,
    # One run at a time: runs reload overlapping hours, and concurrent DML on one table
    # fails in BigQuery.
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        # A list: Airflow 3.3.2 leaves a bare function unwrapped on mapped tasks, then
        # fails iterating it when the task fails.
        "on_failure_callback": [on_task_failure],
    },
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=DEADLINE,
        callback=SyncCallback(on_deadline_missed),
    ),
    tags=["hoststream"],
) as dag:

    @task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
    def wait_for_lake(logical_date: datetime | None = None, dag_run: Any = None) -> bool:
        """The run's hour is complete in the lake (see :func:`lake_ready`)."""
        hour = run_hour(logical_date, dag_run)
        hour_partitions, next_partitions = (
            {
                parse_object_name(name, warehouse.topic).partition
                for name in lake_objects(bucket(), warehouse, h)
            }
            for h in (hour, hour + HOUR)
        )
        return lake_ready(hour_partitions, next_partitions, datetime.now(UTC), hour)

    @task
    def create_tables() -> None:
        """The dataset and both tables, where missing (partitioned and clustered)."""
        hook = BigQueryHook(
            gcp_conn_id=GCP_CONNECTION, location=warehouse.location, use_legacy_sql=False
        )
        ensure_tables(hook.get_client(project_id=warehouse.project), warehouse)

    @task
    def hours(logical_date: datetime | None = None, dag_run: Any = None) -> list[str]:
        """The run's hour and the hours before it to reload, oldest first."""
        reload = hours_to_reload(run_hour(logical_date, dag_run), settings.warehouse_reload_hours)
        return [hour_label(hour) for hour in reload]

    @task
    def clean(hour: str, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Write the hour's valid samples, once each, as its one clean object; return
        its BigQuery steps (see :func:`steps_of`)."""
        found = clean_hour(bucket(), warehouse, parse_hour(hour))
        log.info(
            "%s: %d objects, %d records -> %d rows (%d duplicates, %d left out: %s)",
            hour,
            found.objects,
            found.records,
            found.rows,
            found.duplicates,
            found.rejected_count,
            found.rejected,
        )
        return steps_of(found.hour, attempt_key(run_id or "", found))

    cleaned = clean.expand(hour=hours())
    bigquery = {
        "gcp_conn_id": GCP_CONNECTION,
        "project_id": warehouse.project,
        "location": warehouse.location,
    }
    stage = BigQueryInsertJobOperator.partial(task_id="load_staging", **bigquery).expand_kwargs(
        cleaned.map(stage_args)
    )
    # One at a time: DML jobs on one table conflict in BigQuery.
    replace = BigQueryInsertJobOperator.partial(
        task_id="replace_hour", max_active_tis_per_dagrun=1, **bigquery
    ).expand_kwargs(cleaned.map(replace_args))
    drop = BigQueryDeleteTableOperator.partial(
        task_id="drop_staging", gcp_conn_id=GCP_CONNECTION, ignore_if_missing=True
    ).expand_kwargs(cleaned.map(drop_args))
    merge = BigQueryInsertJobOperator.partial(
        task_id="aggregate", max_active_tis_per_dagrun=1, **bigquery
    ).expand_kwargs(cleaned.map(merge_args))

    wait_for_lake() >> create_tables() >> cleaned
    stage >> replace >> [drop, merge]
