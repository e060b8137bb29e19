"""Settings for a throwaway local stack on free loopback ports: tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from config import LOOPBACK, AllSettings, local_postgres_dsn


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now
    (all held open while choosing, so none repeats)."""
    with ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
    return ports


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A folder under the system's temp dir for a benchmark's stack and workers: removed
    once the benchmark is done (a run leaves gigabytes of Kafka and RocksDB data), kept
    with its logs when it failed. Readable by all: PostgreSQL runs as its own user."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(state, 0o755)
    try:
        yield state
    except BaseException:
        print(f"state and logs kept in {state}", file=sys.stderr)
        raise
    shutil.rmtree(state, ignore_errors=True)


def throwaway_settings(stack_dir: Path, kafka_libs_dir: Path, **overrides: Any) -> AllSettings:
    """Every role's settings for a stack in ``stack_dir`` on fresh free ports.

    Every endpoint is passed explicitly so HOSTSTREAM_* variables in the caller's
    environment cannot point it at another Kafka or database.
    """
    kafka, controller, postgres, gcs, bigquery, bigquery_grpc, web = free_ports(7)
    fields: dict[str, Any] = {
        "local_stack": True,
        "stack_dir": stack_dir,
        "kafka_libs_dir": kafka_libs_dir,
        "stack_kafka_port": kafka,
        "stack_kafka_controller_port": controller,
        "stack_postgres_port": postgres,
        "stack_gcs_port": gcs,
        "stack_bigquery_port": bigquery,
        "stack_bigquery_grpc_port": bigquery_grpc,
        "kafka_bootstrap": f"{LOOPBACK}:{kafka}",
        "postgres_dsn": SecretStr(local_postgres_dsn(postgres)),
        "gcs_emulator_host": f"http://{LOOPBACK}:{gcs}",
        "bigquery_emulator_host": f"http://{LOOPBACK}:{bigquery}",
        "web_port": web,
    }
    return AllSettings(**{**fields, **overrides})


async def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_dsn``; return its DSN. A test or a
    benchmark run gets one of its own: silver judges duplicates per database."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"
