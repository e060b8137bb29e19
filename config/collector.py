"""The collector's settings (``hoststream collect``): what to sample, how often, where
to spool."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from config.common import CommonSettings


class CollectorSettings(CommonSettings):
    """Settings of ``hoststream collect``."""

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

    collector_transport: Literal["kafka", "http"] = Field(
        default="kafka",
        description="How the collector sends samples: `kafka` (to the topic) or `http` (to a "
        "worker's POST /api/ingest, for hosts that cannot reach Kafka; samples still wait in "
        "the spool while it is away).",
    )
    collector_ingest_url: str = Field(
        default="",
        description="With the http transport: the ingest URL, as "
        "`http://worker.internal:6066/api/ingest`.",
    )
    collector_ingest_token: SecretStr = Field(
        default=SecretStr(""),
        description="With the http transport: the worker's HOSTSTREAM_INGEST_TOKEN.",
    )

    @field_validator("collector_ingest_url")
    @classmethod
    def _check_ingest_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"expected http(s)://host:port/api/ingest, got {value!r}")
        return value

    @model_validator(mode="after")
    def _http_needs_url_and_token(self) -> CollectorSettings:
        if self.collector_transport == "http":
            missing = [
                name
                for name, value in (
                    ("HOSTSTREAM_COLLECTOR_INGEST_URL", self.collector_ingest_url),
                    (
                        "HOSTSTREAM_COLLECTOR_INGEST_TOKEN",
                        self.collector_ingest_token.get_secret_value(),
                    ),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"the http transport needs {' and '.join(missing)}")
        return self

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

    @property
    def tag_pairs(self) -> list[tuple[str, str]]:
        """The user tags as (key, value) pairs, in the order given."""
        return parse_tags(self.tags)


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
