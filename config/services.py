"""The services beyond Kafka that the worker uses and the local stack runs: PostgreSQL,
GCS and BigQuery, and the metrics topic's partitions."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from config.common import LOOPBACK, CommonSettings, LocalStack

_LOCAL_POSTGRES_DSN = "postgresql://hoststream@{host}:{port}/hoststream"


def local_postgres_dsn(port: int) -> str:
    """DSN of the local stack's database (trust authentication on loopback only)."""
    return _LOCAL_POSTGRES_DSN.format(host=LOOPBACK, port=port)


class ServiceSettings(CommonSettings):
    """Where PostgreSQL, GCS and BigQuery are, and how the metrics topic is laid out."""

    topic_partitions: int = Field(
        default=4, ge=1, description="Partitions of the metrics topic; one worker per group."
    )
    postgres_dsn: Annotated[
        SecretStr, LocalStack(_LOCAL_POSTGRES_DSN, "stack_postgres_port", True)
    ] = Field(
        default=SecretStr(""),
        description="postgresql:// DSN of the medallion database. Empty: the local stack's.",
    )
    gcp_project: str = Field(default="hoststream-local", description="GCP project id.")
    gcs_bucket: str = Field(default="hoststream-lake", description="Bucket of the raw data lake.")
    gcs_emulator_host: Annotated[
        str, LocalStack("http://{host}:{port}", "stack_gcs_port", False)
    ] = Field(
        default="",
        description="http://host:port of a GCS emulator. Empty: the local stack's when "
        "local_stack is true, real GCS otherwise.",
    )
    bigquery_emulator_host: Annotated[
        str, LocalStack("http://{host}:{port}", "stack_bigquery_port", False)
    ] = Field(
        default="",
        description="http://host:port of a BigQuery emulator. Empty: the local stack's when "
        "local_stack is true, real BigQuery otherwise.",
    )
    stack_postgres_port: int = Field(default=15432, ge=1, le=65535, description="PostgreSQL port.")
    stack_gcs_port: int = Field(default=14443, ge=1, le=65535, description="fake-gcs-server port.")
    stack_bigquery_port: int = Field(
        default=19050, ge=1, le=65535, description="BigQuery emulator REST port."
    )
