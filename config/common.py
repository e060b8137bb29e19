"""What every role's settings share: where Kafka is, the topic, the local stack switch.

Each role reads its own settings class (:mod:`config.collector`, :mod:`config.worker`,
:mod:`config.stack`), every field also ``HOSTSTREAM_<FIELD>``; the code receives one
and never reads ``os.environ``. Endpoints left unset point at the local stack
(``hoststream stack up``) on loopback; set them to use an existing Kafka,
PostgreSQL, GCS or BigQuery instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LocalStack:
    """Marks an endpoint setting that, left empty while ``local_stack`` is true, points at
    the local stack's service: ``address`` with ``{host}`` and ``{port}`` filled in, the
    port from the setting named ``port``."""

    address: str
    port: str
    required: bool
    """Whether it must be set when ``local_stack`` is false (otherwise empty means the
    real cloud service)."""


class CommonSettings(BaseSettings):
    """The settings every role reads; each field is also ``HOSTSTREAM_<FIELD>``."""

    # hide_input_in_errors: a refused value may be a secret (a DSN's password, the
    # webhook URL), and a ValidationError's text would repeat it.
    model_config = SettingsConfigDict(
        env_prefix="HOSTSTREAM_", frozen=True, extra="forbid", hide_input_in_errors=True
    )
    unused_endpoints: ClassVar[frozenset[str]] = frozenset()
    """Endpoints a role never connects to, so never requires."""

    kafka_bootstrap: Annotated[str, LocalStack("{host}:{port}", "stack_kafka_port", True)] = Field(
        default="",
        description="Comma-separated host:port list of Kafka brokers. "
        "Empty: the local stack's broker.",
    )
    topic: str = Field(default="machine_metrics", description="Topic the collectors produce to.")
    local_stack: bool = Field(
        default=True,
        description="Point unset endpoints at the local stack on loopback.",
    )
    stack_kafka_port: int = Field(default=19092, ge=1, le=65535, description="Broker port.")

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
        for name, mark in _endpoints(cls):
            if not _secret_value(data.get(name)):
                port = data.get(mark.port) or cls.model_fields[mark.port].default
                data[name] = mark.address.format(host=LOOPBACK, port=port)
        return data

    @model_validator(mode="after")
    def _require_endpoints(self) -> CommonSettings:
        missing = [
            f"HOSTSTREAM_{name.upper()}"
            for name, mark in _endpoints(type(self))
            if mark.required
            and name not in self.unused_endpoints
            and not _secret_value(getattr(self, name))
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


def _endpoints(cls: type[BaseSettings]) -> Iterator[tuple[str, LocalStack]]:
    for name, field in cls.model_fields.items():
        for mark in field.metadata:
            if isinstance(mark, LocalStack):
                yield name, mark


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off", ""}
    return bool(value)


def _secret_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value or "")
