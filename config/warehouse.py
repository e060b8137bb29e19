"""The warehouse's settings (``hoststream warehouse`` and the hourly DAG): where the lake
is loaded in BigQuery, how many past hours each hourly run reloads, and the rules it
applies on the way, which are the stream's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator

from config.rules import RuleSettings
from config.services import ServiceSettings

if TYPE_CHECKING:
    from warehouse.target import Warehouse


class WarehouseSettings(RuleSettings, ServiceSettings):
    """Settings of ``hoststream warehouse`` and of the hourly DAG's loads."""

    # It reads the lake and writes BigQuery: an Airflow worker needs no broker or database.
    unused_endpoints: ClassVar[frozenset[str]] = frozenset({"kafka_bootstrap", "postgres_dsn"})

    bigquery_dataset: str = Field(
        default="hoststream",
        pattern=r"^[A-Za-z0-9_]{1,1024}$",
        description="BigQuery dataset of the warehouse tables (raw_performance, "
        "perf_1h_summary) in gcp_project; created when missing.",
    )
    bigquery_location: str = Field(
        default="US", description="BigQuery location of the dataset and its jobs."
    )
    warehouse_reload_hours: int = Field(
        default=3,
        ge=1,
        le=168,
        description="Hours each hourly load reloads, ending with its own: samples that "
        "reached the lake late for the hours before it are loaded too.",
    )

    warehouse_start: datetime = Field(
        default=datetime(2026, 11, 1, tzinfo=UTC),
        description="First lake hour the hourly DAG loads (UTC, ISO 8601): with catchup it "
        "loads every hour since, one run per hour, oldest first. Set it to when the lake "
        "started.",
    )

    @field_validator("warehouse_start")
    @classmethod
    def _whole_utc_hour(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    def warehouse(self) -> Warehouse:
        """The warehouse these settings name, with the stream's rules."""
        from warehouse.target import Warehouse

        return Warehouse(
            project=self.gcp_project,
            dataset=self.bigquery_dataset,
            bucket=self.gcs_bucket,
            topic=self.topic,
            location=self.bigquery_location,
            thresholds=self.thresholds,
            limits=self.limits,
        )
