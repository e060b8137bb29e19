"""BigQuery jobs under deterministic ids: a retry re-attaches to its job, never runs it twice.

A step of hour H in one attempt (a DAG run, a command's invocation) always gets the same
job id. Before inserting, the job is looked up: one that is running is waited for, one
that succeeded is taken as done, and only one that failed is run again, under the next
id (``<id>_again1``, ...), so every try leaves its own job to read. Real BigQuery refuses
a second job with an id (409); bqemulator 1.4.0 runs it again, which is why the lookup
comes first rather than relying on the refusal.
"""

from __future__ import annotations

import re
import time
import typing
from datetime import datetime
from typing import Any

import requests
from google.api_core.exceptions import Conflict, NotFound, RetryError
from google.api_core.retry import Retry
from google.cloud import bigquery

from sinks.base import bounded_reason
from warehouse.target import Warehouse

_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")
_MAX_ID_CHARS = 1024
MAX_RERUNS = 20
"""Failed tries of one step in one attempt before giving up: each left a failed job."""
REQUEST_TIMEOUT_S = 30.0
"""One BigQuery API request: a server that stopped answering fails it, not hangs it."""
PATIENCE_S = 120.0
"""How long failing requests of a step are retried before the load fails."""
JOB_TIMEOUT_S = 3600.0
"""Longest wait for one job to finish."""
_POLL_S = (0.2, 5.0)
"""First and longest pause between two looks at a running job."""


class WarehouseError(RuntimeError):
    """A load that cannot go on; ``str(exc)`` says why in one line."""


Job = bigquery.LoadJob | bigquery.QueryJob


def job_id(step: str, wh: Warehouse, hour: datetime, attempt_key: str) -> str:
    """``hoststream_<dataset>_<step>_<YYYYMMDDHH>_<attempt_key>``, with characters BigQuery
    refuses in a job id replaced by ``_``. The same arguments give the same id."""
    raw = f"hoststream_{wh.dataset}_{step}_{hour:%Y%m%d%H}_{attempt_key}"
    return _NOT_IN_ID.sub("_", raw)[:_MAX_ID_CHARS]


def run_job(client: bigquery.Client, wh: Warehouse, job: str, configuration: dict[str, Any]) -> Job:
    """Run a load or query job (``configuration``: the API's job configuration) as ``job``
    and wait for it; re-attach instead when a job of that id is running or succeeded.
    Raises the job's error (google.api_core's exceptions) when it fails."""
    try:
        for rerun in range(MAX_RERUNS):
            current = job if rerun == 0 else f"{job}_again{rerun}"
            try:
                found = _get(client, wh, current)
            except NotFound:
                try:
                    inserted = _insert(client, wh, current, configuration)
                except Conflict:  # another try inserted it meanwhile
                    found = _get(client, wh, current)
                else:
                    return _finished(inserted)
            if found.state == "DONE" and found.error_result is not None:
                continue
            return _finished(found)
    except (requests.RequestException, RetryError, TimeoutError) as exc:
        raise WarehouseError(
            f"BigQuery did not answer about job {job}: {bounded_reason(str(exc) or repr(exc))}"
        ) from None
    raise RuntimeError(f"BigQuery job {job} failed {MAX_RERUNS} times; see its jobs' errors")


def _get(client: bigquery.Client, wh: Warehouse, job: str) -> Job:
    return typing.cast(
        Job,
        client.get_job(
            job, location=wh.location, retry=Retry(deadline=PATIENCE_S), timeout=REQUEST_TIMEOUT_S
        ),
    )


def _finished(job: Job) -> Job:
    """``job`` once done; raises its error. Polled here, each look bounded, because a
    job's own ``result()`` can wait on one request for as long as its whole timeout."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    pause_s, longest_s = _POLL_S
    while job.state != "DONE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"job not done after {JOB_TIMEOUT_S:.0f} s")
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, longest_s)
        job.reload(retry=Retry(deadline=PATIENCE_S), timeout=REQUEST_TIMEOUT_S)
    job.result(retry=Retry(deadline=PATIENCE_S), timeout=REQUEST_TIMEOUT_S)
    return job


def _insert(client: bigquery.Client, wh: Warehouse, job: str, configuration: dict[str, Any]) -> Job:
    if "load" in configuration:
        load = configuration["load"]
        return client.load_table_from_uri(
            load["sourceUris"],
            bigquery.TableReference.from_api_repr(load["destinationTable"]),
            job_id=job,
            location=wh.location,
            job_config=typing.cast(
                bigquery.LoadJobConfig, bigquery.LoadJobConfig.from_api_repr(configuration)
            ),
            retry=Retry(deadline=PATIENCE_S),
            timeout=REQUEST_TIMEOUT_S,
        )
    return client.query(
        configuration["query"]["query"],
        job_id=job,
        location=wh.location,
        # A failed job is run again under the next id by run_job, never under its own.
        job_retry=None,
        job_config=typing.cast(
            bigquery.QueryJobConfig, bigquery.QueryJobConfig.from_api_repr(configuration)
        ),
        retry=Retry(deadline=PATIENCE_S),
        timeout=REQUEST_TIMEOUT_S,
    )
