"""Every hoststream setting, read once from the environment (prefix ``HOSTSTREAM_``).

The rest of the code receives a :class:`Settings` and never reads ``os.environ``.
Endpoints left unset point at the local stack (``hoststream stack up``) on loopback;
set them to use an existing Kafka, PostgreSQL, GCS or BigQuery instead.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = "127.0.0.1"


class Settings(BaseSettings):
    """hoststream configuration; each field is also ``HOSTSTREAM_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="HOSTSTREAM_", frozen=True, extra="forbid")

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap: str = Field(
        default="",
        description="Comma-separated host:port list of Kafka brokers. "
        "Empty: the local stack's broker.",
    )
    topic: str = Field(default="machine_metrics", description="Topic the collectors produce to.")
    topic_partitions: int = Field(
        default=4, ge=1, description="Partitions of the metrics topic; one worker per group."
    )
    replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of topics hoststream creates."
    )

    # --- PostgreSQL --------------------------------------------------------
    postgres_dsn: SecretStr = Field(
        default=SecretStr(""),
        description="postgresql:// DSN of the medallion database. Empty: the local stack's.",
    )

    # --- Google Cloud (used by the lake and warehouse sinks) -----------------
    gcp_project: str = Field(default="hoststream-local", description="GCP project id.")
    gcs_bucket: str = Field(default="hoststream-lake", description="Bucket of the raw data lake.")
    gcs_emulator_host: str = Field(
        default="",
        description="http://host:port of a GCS emulator. Empty: the local stack's when "
        "local_stack is true, real GCS otherwise.",
    )
    bigquery_emulator_host: str = Field(
        default="",
        description="http://host:port of a BigQuery emulator. Empty: the local stack's when "
        "local_stack is true, real BigQuery otherwise.",
    )

    # --- Collector ---------------------------------------------------------
    interval_s: float = Field(
        default=10.0, ge=0.05, le=3600, description="Seconds between two samples."
    )
    host_id: str = Field(
        default="",
        description="Identity of this host; the Kafka message key. Empty: derived from "
        "/etc/machine-id (stable across reboots and renames), else a random id kept in "
        "collector_dir.",
    )
    tags: str = Field(
        default="",
        description="User tags added to every sample, as key=value pairs separated by "
        "commas (`env=prod,team=db`).",
    )
    collector_dir: Path = Field(
        default=Path(".hoststream/collector"),
        description="Collector state: the on-disk spool of samples not yet acknowledged by "
        "Kafka (spool/<topic>/<host_id>/), and the host id where /etc/machine-id is missing.",
    )
    spool_max_bytes: int = Field(
        default=100_000_000,
        ge=100_000,
        description="Most bytes of samples the spool keeps while Kafka is away; when full the "
        "oldest are dropped and counted (about 3 kB a sample: 100 MB is 9 hours at 1 s).",
    )

    # --- Worker ------------------------------------------------------------
    app_id: str = Field(
        default="hoststream", description="Faust app id: consumer group and changelog prefix."
    )
    store: str = Field(default="rocksdb://", description="Faust table store URL.")
    data_dir: Path = Field(
        default=Path(".hoststream/worker"),
        description="Worker state: RocksDB tables, in a folder per app id; one per worker.",
    )
    web_host: str = Field(default=LOOPBACK, description="Address the worker's web server binds.")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Port of the web server.")
    batch_max_records: int = Field(
        default=5000,
        ge=1,
        description="Most records in one batch: the worker's largest fetch from Kafka, and "
        "its sinks' largest write. A batch never waits to fill: it is what Kafka had.",
    )
    max_future_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="Silver rejects samples stamped further than this in the future, seconds.",
    )
    max_id_chars: int = Field(
        default=256,
        ge=1,
        le=2000,
        description="Silver rejects samples whose host_id or event_id is longer (both are "
        "index keys: PostgreSQL indexes at most about 2,700 bytes per row).",
    )
    max_text_chars: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Silver rejects samples whose hostname is longer.",
    )
    dead_letter_max_bytes: int = Field(
        default=900_000,
        ge=1000,
        description="Largest dead-letter message (key + value) sent as is; a larger one is "
        "cut to this size with a hoststream-truncated header (silver.rejected keeps it "
        "whole). Keep it under the broker's message.max.bytes (1 MB by default).",
    )
    gold_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="A sample still counts in its gold window until this long after the "
        "window's end (by the newest sample time on its partition); later ones are late.",
    )
    gold_upsert_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="Gold writes the live rows of open windows to PostgreSQL at most this "
        "often, seconds (0: after every batch). Their records are committed only once "
        "written, so a crash replays them.",
    )
    gold_finalize_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often gold rows of closed windows are marked final; also how long "
        "a closed window must be left unchanged first.",
    )
    gold_retention_s: float = Field(
        default=86400.0,
        gt=0,
        description="How long the worker's windowed tables keep a window for lookups.",
    )
    anomaly_cpu_p95_percent: float = Field(
        default=90.0, ge=0, le=100, description="Gold flags a window whose CPU p95 exceeds this."
    )
    anomaly_memory_max_percent: float = Field(
        default=90.0,
        ge=0,
        le=100,
        description="Gold flags a window whose memory maximum exceeds this.",
    )
    anomaly_disk_max_percent: float = Field(
        default=90.0,
        ge=0,
        le=100,
        description="Gold flags a window whose fullest disk exceeds this.",
    )
    broker_session_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Consumer group session timeout; short so a worker joins in seconds.",
    )

    # --- Local stack -------------------------------------------------------
    local_stack: bool = Field(
        default=True,
        description="Point unset endpoints at the local stack on loopback.",
    )
    stack_dir: Path = Field(
        default=Path(".hoststream/stack"),
        description="State of the local stack: jars, data, logs, pid files.",
    )
    stack_kafka_port: int = Field(default=19092, ge=1, le=65535, description="Broker port.")
    stack_kafka_controller_port: int = Field(
        default=19093, ge=1, le=65535, description="KRaft controller port."
    )
    stack_postgres_port: int = Field(default=15432, ge=1, le=65535, description="PostgreSQL port.")
    stack_gcs_port: int = Field(default=14443, ge=1, le=65535, description="fake-gcs-server port.")
    stack_bigquery_port: int = Field(
        default=19050, ge=1, le=65535, description="BigQuery emulator REST port."
    )
    stack_bigquery_grpc_port: int = Field(
        default=19060, ge=1, le=65535, description="BigQuery emulator gRPC port."
    )
    kafka_libs_dir: Path = Field(
        default=Path(".hoststream/kafka-libs"),
        description="Kafka broker jars fetched from Maven Central by `hoststream stack install`; "
        "kept outside stack_dir so several stacks (and test runs) share one download.",
    )
    stack_start_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="Longest wait for one local stack service to become ready.",
    )

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: str) -> str:
        parse_tags(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_host_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("host_id"):
            from collector.identity import default_host_id

            collector_dir = data.get("collector_dir") or cls.model_fields["collector_dir"].default
            data["host_id"] = default_host_id(Path(collector_dir))
        return data

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in filter(None, (s.strip() for s in value.split(","))):
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_endpoints_to_local_stack(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not _truthy(data.get("local_stack", True)):
            return data
        ports = {name: data.get(f"stack_{name}_port") or _default_port(name) for name in _PORTS}
        if not data.get("kafka_bootstrap"):
            data["kafka_bootstrap"] = f"{LOOPBACK}:{ports['kafka']}"
        if not _secret_value(data.get("postgres_dsn")):
            data["postgres_dsn"] = local_postgres_dsn(int(ports["postgres"]))
        if not data.get("gcs_emulator_host"):
            data["gcs_emulator_host"] = f"http://{LOOPBACK}:{ports['gcs']}"
        if not data.get("bigquery_emulator_host"):
            data["bigquery_emulator_host"] = f"http://{LOOPBACK}:{ports['bigquery']}"
        return data

    @model_validator(mode="after")
    def _require_endpoints(self) -> Settings:
        missing = [
            f"HOSTSTREAM_{name.upper()}"
            for name, value in (
                ("kafka_bootstrap", self.kafka_bootstrap),
                ("postgres_dsn", self.postgres_dsn.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} must be set when HOSTSTREAM_LOCAL_STACK is false"
            )
        return self

    def as_environment(self) -> dict[str, str]:
        """The ``HOSTSTREAM_*`` variables that give a child process these same settings."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"HOSTSTREAM_{name.upper()}"] = text
        return env

    @property
    def bootstrap_servers(self) -> list[str]:
        """The broker list as aiokafka takes it."""
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]

    @property
    def tag_pairs(self) -> list[tuple[str, str]]:
        """The user tags as (key, value) pairs, in the order given."""
        return parse_tags(self.tags)

    @property
    def faust_broker_url(self) -> str:
        """The broker list as Faust takes it: ``kafka://h1:p1;h2:p2``."""
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)


_PORTS = ("kafka", "postgres", "gcs", "bigquery")


def _default_port(name: str) -> int:
    default = Settings.model_fields[f"stack_{name}_port"].default
    assert isinstance(default, int)
    return default


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off", ""}
    return bool(value)


def _secret_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value or "")


def parse_tags(text: str) -> list[tuple[str, str]]:
    """``env=prod, team=db`` as ``[("env", "prod"), ("team", "db")]``.

    Raises ``ValueError`` for a pair without ``=``, an empty key or a key given twice.
    """
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key:
            raise ValueError(f"expected key=value[,key=value...], got {item!r}")
        if key in pairs:
            raise ValueError(f"tag {key!r} is given twice")
        pairs[key] = value
    return list(pairs.items())


def local_postgres_dsn(port: int) -> str:
    """DSN of the local stack's database (trust authentication on loopback only)."""
    return f"postgresql://hoststream@{LOOPBACK}:{port}/hoststream"


class UnknownSetting(ValueError):
    """A ``HOSTSTREAM_*`` variable that names no setting: most likely a typo."""


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the settings from the environment; ``overrides`` win over it.

    Raises :class:`UnknownSetting` for a ``HOSTSTREAM_*`` variable that is no
    setting, since a silently ignored typo would run with the default instead,
    and pydantic's ``ValidationError`` for a bad value.
    """
    environ = os.environ if environ is None else environ
    known = {f"HOSTSTREAM_{name.upper()}" for name in Settings.model_fields}
    for variable in sorted(environ):
        if variable.upper().startswith("HOSTSTREAM_") and variable.upper() not in known:
            close = difflib.get_close_matches(variable.upper(), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UnknownSetting(f"{variable} is not a hoststream setting{hint}")
    return Settings(**overrides)
