"""The collector against a broker that goes away: nothing lost, nothing twice, order kept.

These tests stop and restart Kafka, so they run their own broker (the session's
is shared by other tests) on free ports in a temporary stack directory.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from app.settings import Settings
from collector.spool import spool_directory, spooled
from stack import Stack

# read_topic is the ground truth: every record up to the end offsets, duplicates included.
from tests.integration.fixtures import (
    Processes,
    eventually,
    read_topic,
    run_command,
    settings_env,
)
from tests.stack_fixtures import stack_test_settings

pytestmark = pytest.mark.integration

HOST = "outage-host"


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[Stack]:
    """A broker of this module's own, free to stop and restart."""
    stack_dir = Path(tempfile.mkdtemp(prefix="hoststream-test-outage-"))
    stack = Stack(stack_test_settings(stack_dir), echo=lambda line: None)
    try:
        stack.up(["kafka"])
        yield stack
    finally:
        stack.down()
        shutil.rmtree(stack_dir, ignore_errors=True)


@pytest.fixture
def settings(own_kafka: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return own_kafka.settings.model_copy(
        update={
            "topic": f"metrics_{request.node.name[5:30]}",
            "host_id": HOST,
            "interval_s": 0.2,
            "collector_dir": tmp_path / "collector",
        }
    )


def waiting(settings: Settings) -> list[bytes]:
    """The samples in the collector's spool, read beside it."""
    return spooled(spool_directory(settings.collector_dir, settings.topic, HOST))


async def stop_kafka(stack: Stack) -> None:
    await asyncio.to_thread(stack.service("kafka").stop)


async def start_kafka(stack: Stack) -> None:
    await asyncio.to_thread(stack.up, ["kafka"])


async def test_a_broker_outage_loses_no_sample_and_sends_none_twice(
    own_kafka: Stack, settings: Settings, processes: Processes
):
    count = 250  # 50 s at 0.2 s: the outage falls in the middle
    collector = processes.start(
        settings_env(settings), "collect", "--count", str(count), name="collector"
    )
    await eventually(
        lambda: asyncio.sleep(0, "sampling" in processes.log("collector")), what="collector start"
    )
    await asyncio.sleep(2)
    await stop_kafka(own_kafka)
    # Samples wait up to SEND_EVERY_S (25 at 0.2 s) anyway: the outage must be noticed
    # and hold back more than that.
    await eventually(
        lambda: asyncio.sleep(0, "stopped acknowledging" in processes.log("collector")),
        what="the collector noticing the outage",
    )
    await eventually(
        lambda: asyncio.sleep(0, len(waiting(settings)) >= 60), what="samples in the spool"
    )
    await start_kafka(own_kafka)
    returncode = await asyncio.to_thread(collector.wait, 90)
    log = processes.log("collector")
    assert returncode == 0, log

    records = await read_topic(settings)
    ids = [orjson.loads(value)["event_id"] for *_, value in records]
    assert len(ids) == count
    assert len(set(ids)) == count
    assert {key for _, _, key, _ in records} == {HOST.encode()}
    assert len({partition for partition, *_ in records}) == 1
    times = [orjson.loads(value)["timestamp"] for *_, value in records]
    assert times == sorted(times)
    assert len(set(times)) == count
    assert waiting(settings) == []
    # One line when the broker goes, one when it returns; not one per sample.
    assert log.count("stopped acknowledging samples") == 1, log
    assert log.count("acknowledges samples again") == 1, log
    assert "Traceback" not in log


async def test_a_killed_collector_leaves_its_spool_to_the_next_run(
    own_kafka: Stack, settings: Settings, processes: Processes
):
    env = settings_env(settings)
    first = processes.start(env, "collect", name="first")
    await eventually(
        lambda: asyncio.sleep(0, "sampling" in processes.log("first")), what="collector start"
    )
    await stop_kafka(own_kafka)
    await eventually(
        lambda: asyncio.sleep(0, len(waiting(settings)) >= 10), what="samples in the spool"
    )
    first.kill()
    first.wait()
    left = [orjson.loads(payload)["event_id"] for payload in waiting(settings)]

    await start_kafka(own_kafka)
    done = await asyncio.to_thread(run_command, env, "collect", "--count", "1")
    assert done.returncode == 0, done.stderr
    assert f"{len(left)} samples spooled by a previous run" in done.stderr

    records = await read_topic(settings)
    ids = [orjson.loads(value)["event_id"] for *_, value in records]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if i in set(left)] == left
    assert ids[-len(left) - 1 : -1] == left  # the spool first, then the new sample
    assert waiting(settings) == []
