"""The local stack's settings (``hoststream stack``): where its state lives, the ports
of its services (:mod:`config.common`, :mod:`config.services` hold those the other
roles reach), and what it creates in them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from config.services import ServiceSettings


class StackSettings(ServiceSettings):
    """Settings of ``hoststream stack``."""

    stack_dir: Path = Field(
        default=Path(".hoststream/stack"),
        description="State of the local stack: jars, data, logs, pid files.",
    )
    stack_kafka_controller_port: int = Field(
        default=19093, ge=1, le=65535, description="KRaft controller port."
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
