"""Two workers, one killed: the other takes its partitions over from its standby
copy of gold's state and the tables stay exact."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.preflight import ensure_topics
from config import AllSettings
from tests.integration.fixtures import Processes, committed_up_to_end, eventually, settings_env
from tests.integration.test_stream_processing import (
    FLEET,
    build_stream,
    check_tables,
    produce,
    tuned,
)
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration


async def test_a_standby_takes_over_a_killed_workers_hosts_exactly(
    pipeline_settings: AllSettings, processes: Processes, tmp_path: Path
):
    settings = tuned(pipeline_settings, batch_max_records=500, table_standby_replicas=1)
    second = settings.model_copy(
        update={"data_dir": tmp_path / "second-worker", "web_port": free_port()}
    )
    stream = build_stream(samples_per_host=20, now=datetime.now(UTC), hosts=FLEET)
    half = len(stream.records) // 2
    await ensure_topics(settings)
    first = processes.start(settings_env(settings), "worker", name="first")
    processes.start(settings_env(second), "worker", name="second")

    async def both_read() -> bool:
        return all("reading from" in processes.log(name) for name in ("first", "second"))

    await eventually(both_read, what="both workers to get partitions")
    await produce(settings, stream.records[:half])
    await eventually(lambda: committed_up_to_end(settings), what="the first half")
    # The standby copy follows the changelog a moment behind the active one.
    await asyncio.sleep(2)

    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    await produce(settings, stream.records[half:])
    await eventually(
        lambda: committed_up_to_end(settings), timeout_s=90, what="the second worker to finish"
    )
    print(f"killed worker's partitions served again in {time.monotonic() - killed_at:.1f} s")
    assert "standby" in processes.log("second").lower()
    assert await changelog_config(settings) == {
        "cleanup.policy": "compact",
        "segment.ms": "60000",
        "min.cleanable.dirty.ratio": "0.1",
    }
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        await check_tables(database, settings, stream)
    finally:
        await database.close()


async def changelog_config(settings: AllSettings) -> dict[str, str]:
    """What gold's changelog topic was created with: compacted, so a restore reads about
    one record per host."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        topic = f"{settings.app_id}-gold_hosts-changelog"
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    wanted = ("cleanup.policy", "segment.ms", "min.cleanable.dirty.ratio")
    entries = response.resources[0][4]  # (error, message, type, name, entries)
    return {entry[0]: entry[1] for entry in entries if entry[0] in wanted}
