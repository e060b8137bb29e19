"""Where the warehouse lives (project, dataset, bucket) and its tables' schemas.

The schemas are generated from the rows the medallion writes (:class:`schemas.rows.SilverRow`
for the raw table, :class:`schemas.anomalies.GoldRow` for the hourly one), never
autodetected: a field added to a row is a column added here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.anomalies import GoldRow, Thresholds
from schemas.rows import Limits, SilverRow

RAW_TABLE = "raw_performance"
"""One row per valid sample (silver's rows), partitioned by hour on sample_time."""
HOURLY_TABLE = "perf_1h_summary"
"""One row per host and hour, the same definitions as gold.perf_1h_summary."""
CLEAN_PREFIX = "clean"
"""Where the cleaned NDJSON of each hour is written in the lake's bucket (beside raw/)."""


@dataclass(frozen=True)
class Warehouse:
    """A BigQuery dataset loaded from the lake in ``bucket``, and the rules applied on the
    way: silver's (``limits``) and gold's anomaly ``thresholds``."""

    project: str
    dataset: str
    bucket: str
    topic: str = "machine_metrics"
    location: str = "US"
    thresholds: Thresholds = field(default_factory=Thresholds)
    limits: Limits = field(default_factory=Limits)

    def table(self, name: str) -> str:
        """``project.dataset.name``."""
        return f"{self.project}.{self.dataset}.{name}"


_TYPES: dict[Any, str] = {
    str: "STRING",
    int: "INT64",
    float: "FLOAT64",
    bool: "BOOL",
    datetime: "TIMESTAMP",
}


def bigquery_schema(row: type[Any]) -> list[dict[str, str]]:
    """The BigQuery schema (API form) of a row dataclass: a column per field, in order;
    ``X | None`` fields are NULLABLE, the others REQUIRED."""
    hints = typing.get_type_hints(row)
    columns = []
    for f in dataclasses.fields(row):
        hint, mode = hints[f.name], "REQUIRED"
        if typing.get_origin(hint) in (types.UnionType, typing.Union):
            (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            mode = "NULLABLE"
        columns.append({"name": f.name, "type": _TYPES[hint], "mode": mode})
    return columns


RAW_SCHEMA = bigquery_schema(SilverRow)
HOURLY_SCHEMA = bigquery_schema(GoldRow)


def bigquery_client(wh: Warehouse, emulator_host: str | None) -> Any:
    """A BigQuery client for ``wh``'s project: Application Default Credentials, or none
    with ``emulator_host`` (an emulator's ``http://host:port``)."""
    # Imported here: the schemas above serve readers without the warehouse extra.
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    if not emulator_host:
        return bigquery.Client(project=wh.project, location=wh.location)
    return bigquery.Client(
        project=wh.project,
        location=wh.location,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=emulator_host),
    )
