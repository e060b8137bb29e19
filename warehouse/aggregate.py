"""The hourly aggregate: per host and hour, what gold.perf_1h_summary holds, in SQL.

Definitions as in :func:`schemas.anomalies.gold_row`: the sample count; average, maximum
and nearest-rank p95 (the ceil(0.95 n)-th smallest value, exact here where gold uses its
sketch) of CPU and memory percent; bytes sent and received as sums of the samples'
counter deltas, saturating at 2^63-1 like gold's; the fullest disk; and the anomaly flags
with the same thresholds. A MERGE writes the hour: a rerun or a reloaded hour changes its
rows, and drops those of hosts the hour no longer has.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from google.cloud import bigquery

from schemas.windows import INT64_MAX
from warehouse.hours import HOUR, checked_hour
from warehouse.jobs import job_id, run_job
from warehouse.load import hour_condition, query_config, timestamp_literal
from warehouse.target import HOURLY_SCHEMA, HOURLY_TABLE, RAW_TABLE, Warehouse


def _saturated_sum(column: str) -> str:
    # BIGNUMERIC, not NUMERIC: bqemulator casts NUMERIC to DECIMAL(18,3), which cannot
    # hold a 64-bit count; BigQuery takes either.
    return f"CAST(LEAST(SUM(CAST({column} AS BIGNUMERIC)), {INT64_MAX}) AS INT64)"


def _p95(column: str) -> str:
    # The value whose rank in the host's hour is ceil(0.95 n), as gold computes the rank
    # (math.ceil(0.95 * n) in doubles).
    rank = f"ROW_NUMBER() OVER (PARTITION BY host_id ORDER BY {column})"
    return f"{rank} = CAST(CEIL(0.95 * COUNT(*) OVER (PARTITION BY host_id)) AS INT64)"


def aggregate_sql(wh: Warehouse, hour: datetime) -> str:
    """A script: ``hour``'s summary rows (one per host with samples in the raw table)
    computed into a staging table, then MERGEd into the hourly table."""
    start = checked_hour(hour)
    t = wh.thresholds
    staging = f"`{summary_staging_table(wh, start)}`"
    columns = [column["name"] for column in HOURLY_SCHEMA]
    updates = ",\n    ".join(f"{c} = source.{c}" for c in columns if c not in _KEY)
    # Through a table rather than MERGE ... USING (SELECT ...): bqemulator 1.4.0 gives
    # NULL p95s when the aggregating SELECT runs inside its MERGE.
    return f"""CREATE OR REPLACE TABLE {staging} AS
  SELECT *,
    cpu_p95_percent > {t.cpu_p95_percent!r} AS cpu_anomaly,
    memory_max_percent > {t.memory_max_percent!r} AS memory_anomaly,
    disk_max_percent > {t.disk_max_percent!r} AS disk_anomaly
  FROM (
    SELECT host_id,
      {timestamp_literal(start)} AS window_start,
      {timestamp_literal(start + HOUR)} AS window_end,
      COUNT(*) AS sample_count,
      AVG(cpu_percent) AS cpu_avg_percent,
      MAX(cpu_percent) AS cpu_max_percent,
      MAX(IF(cpu_at_p95, cpu_percent, NULL)) AS cpu_p95_percent,
      AVG(memory_percent) AS memory_avg_percent,
      MAX(memory_percent) AS memory_max_percent,
      MAX(IF(memory_at_p95, memory_percent, NULL)) AS memory_p95_percent,
      {_saturated_sum("net_bytes_sent_delta")} AS net_bytes_sent,
      {_saturated_sum("net_bytes_recv_delta")} AS net_bytes_recv,
      MAX(disk_max_percent) AS disk_max_percent
    FROM (
      SELECT *, {_p95("cpu_percent")} AS cpu_at_p95, {_p95("memory_percent")} AS memory_at_p95
      FROM `{wh.table(RAW_TABLE)}`
      WHERE {hour_condition("sample_time", start)}
    )
    GROUP BY host_id
  );
MERGE `{wh.table(HOURLY_TABLE)}` AS target
USING {staging} AS source
ON target.host_id = source.host_id AND target.window_start = source.window_start
WHEN MATCHED THEN UPDATE SET
    {updates}
WHEN NOT MATCHED THEN INSERT ({", ".join(columns)})
  VALUES ({", ".join(f"source.{c}" for c in columns)})
WHEN NOT MATCHED BY SOURCE AND {hour_condition("target.window_start", start)} THEN DELETE;
DROP TABLE {staging};"""


_KEY = ("host_id", "window_start")


def summary_staging_table(wh: Warehouse, hour: datetime) -> str:
    """Where :func:`aggregate_sql` computes the hour's rows before merging them."""
    return wh.table(f"{HOURLY_TABLE}_staging_{checked_hour(hour):%Y%m%d%H}")


def aggregate_hour(
    client: bigquery.Client, wh: Warehouse, hour: datetime, attempt_key: str | None = None
) -> str:
    """Run :func:`aggregate_sql` for ``hour``; return the job id. ``attempt_key`` as for
    :func:`warehouse.load.load_hour` (None: a fresh attempt). Raises the job's error."""
    job = job_id("aggregate", wh, checked_hour(hour), attempt_key or uuid.uuid4().hex)
    run_job(client, wh, job, query_config(aggregate_sql(wh, hour)))
    return job
