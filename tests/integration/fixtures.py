"""Per-test isolation on the session's stack: a database, a topic, a consumer group
and a worker data directory of each test's own, and the hoststream processes it runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from pydantic import SecretStr

from config import AllSettings
from stack.throwaway import create_database
from tests.stack_fixtures import free_port


def settings_env(settings: AllSettings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child hoststream process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTSTREAM_")}
    return {**env, **settings.as_environment(), "PYTHONUNBUFFERED": "1"}


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout_s: float = 60.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


async def read_topic(settings: AllSettings) -> list[tuple[int, int, bytes | None, bytes]]:
    """Every message of the topic as (partition, offset, key, value): the ground truth."""
    consumer = AIOKafkaConsumer(
        settings.topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        end = await consumer.end_offsets(partitions)
        messages = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                messages += [(m.partition, m.offset, m.key, m.value) for m in batch]
        return sorted(messages)
    finally:
        await consumer.stop()


class CommitProgress(dict):
    """Partition -> (committed offset, end offset); true once every partition is committed
    to its end, and printed as such when a wait for it times out."""

    def __bool__(self) -> bool:
        return len(self) > 0 and all(committed >= end for committed, end in self.values())


async def committed_up_to_end(settings: AllSettings) -> CommitProgress:
    """How far the worker's consumer group has committed the topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
        except GroupCoordinatorNotAvailableError:
            return CommitProgress()  # the group does not exist yet
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        end = await consumer.end_offsets(partitions)
        # A partition that never held a message has nothing to commit.
        return CommitProgress(
            {
                tp.partition: (committed[tp].offset if tp in committed else 0, end[tp])
                for tp in partitions
            }
        )
    finally:
        await consumer.stop()
        await admin.close()


class Processes:
    """hoststream commands a test starts; all are stopped when the test ends."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str], *args: str, name: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.running.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for process in self.running:
            self.stop(process)


def run_command(
    env: dict[str, str], *args: str, timeout_s: float = 90.0
) -> subprocess.CompletedProcess[str]:
    """Run a hoststream command to completion, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture
async def database(stack_settings: AllSettings) -> Any:
    """A fresh database on the stack's PostgreSQL; yields its DSN and drops it afterwards."""
    admin_dsn = stack_settings.postgres_dsn.get_secret_value()
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield await create_database(admin_dsn, name)
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture
def pipeline_settings(stack_settings: AllSettings, database: str, tmp_path: Path) -> AllSettings:
    """The stack's settings with a topic, consumer group, database and state of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    return stack_settings.model_copy(
        update={
            "topic": f"machine_metrics_{suffix}",
            "app_id": f"hoststream-test-{suffix}",
            "postgres_dsn": SecretStr(database),
            "data_dir": tmp_path / "worker",
            "collector_dir": tmp_path / "collector",
            "web_port": free_port(),
            "interval_s": 0.2,
        }
    )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.stop_all()
