"""The collector against a broker that goes away: nothing lost, nothing twice, order kept;
against a sample Kafka refuses, and a spool damaged under it: it says so and goes on,
or stops with one line.

These tests stop and restart Kafka, so they run their own broker (the session's
is shared by other tests) on free ports in a temporary stack directory.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from collector.sampler import Sampler
from collector.spool import Spool, spool_directory, spooled
from config import AllSettings
from schemas.metrics import to_json
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
def settings(own_kafka: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> AllSettings:
    return own_kafka.settings.model_copy(
        update={
            "topic": f"metrics_{request.node.name[5:30]}",
            "host_id": HOST,
            "interval_s": 0.2,
            "collector_dir": tmp_path / "collector",
        }
    )


def waiting(settings: AllSettings) -> list[bytes]:
    """The samples in the collector's spool, read beside it."""
    return spooled(spool_directory(settings.collector_dir, settings.topic, HOST))


async def stop_kafka(stack: Stack) -> None:
    await asyncio.to_thread(stack.service("kafka").stop)


async def start_kafka(stack: Stack) -> None:
    await asyncio.to_thread(stack.up, ["kafka"])


async def test_a_broker_outage_loses_no_sample_and_sends_none_twice(
    own_kafka: Stack, settings: AllSettings, processes: Processes
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
    own_kafka: Stack, settings: AllSettings, processes: Processes
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


async def create_topic(settings: AllSettings, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    settings.topic,
                    settings.topic_partitions,
                    1,
                    topic_configs={"max.message.bytes": str(max_message_bytes)},
                )
            ]
        )
    finally:
        await admin.close()
    assert [error for _, error, *_ in response.topic_errors] == [0], response


def spool_of_a_previous_run(settings: AllSettings, tag_bytes: int) -> tuple[list[str], str]:
    """Two samples, one whose tag value is ``tag_bytes`` of incompressible text, two more,
    left in the spool as a run with such a tag would have left them; (ids of the four
    others, id of the large one)."""
    ordinary = Sampler(HOST, settings.interval_s)
    text = base64.b64encode(os.urandom(tag_bytes * 3 // 4)).decode()
    large = Sampler(HOST, settings.interval_s, [("note", text)])
    spool = Spool(spool_directory(settings.collector_dir, settings.topic, HOST), 10**8)
    try:
        samples = [ordinary.sample(status=(n, 0)) for n in range(2)]
        samples.append(large.sample(status=(2, 0)))
        samples += [ordinary.sample(status=(n, 0)) for n in range(3, 5)]
        for sample in samples:
            spool.append(to_json(sample))
    finally:
        spool.close()
        ordinary.close()
        large.close()
    ids = [sample["event_id"] for sample in samples]
    return ids[:2] + ids[3:], ids[2]


@pytest.mark.parametrize(
    ("topic_limit", "tag_bytes"),
    [
        (None, 2 * 2**20),  # over aiokafka's max_request_size (1 MiB): refused before sending
        (20_000, 60_000),  # under it, over the topic's max.message.bytes: the broker refuses
    ],
    ids=["producer-limit", "broker-limit"],
)
async def test_a_sample_too_large_for_kafka_is_dropped_counted_and_holds_up_nothing(
    settings: AllSettings, processes: Processes, topic_limit: int | None, tag_bytes: int
):
    settings = settings.model_copy(update={"topic": f"{settings.topic}_{uuid.uuid4().hex[:8]}"})
    if topic_limit is not None:
        await create_topic(settings, topic_limit)
    good, large = spool_of_a_previous_run(settings, tag_bytes)
    count = 15  # 3 s at 0.2 s: the later samples are taken after the large one is dropped
    done = await asyncio.to_thread(
        run_command, settings_env(settings), "collect", "--count", str(count)
    )
    assert done.returncode == 0, done.stderr

    records = [orjson.loads(value) for *_, value in await read_topic(settings)]
    ids = [record["event_id"] for record in records]
    # The samples behind the large one, then every new one, each once and in order.
    assert ids[:4] == good
    assert len(ids) == 4 + count == len(set(ids))
    assert large not in ids
    dropped = [record["collector"]["dropped_samples"] for record in records[4:]]
    assert dropped == sorted(dropped)
    assert dropped[-1] == 1
    assert waiting(settings) == []
    assert done.stderr.count("is too large for Kafka and is dropped") == 1, done.stderr
    assert "1 samples dropped so far" in done.stderr
    # A refusal is not an outage: the samples refused with the large one simply go again.
    assert "stopped acknowledging" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def test_a_spool_damaged_under_the_collector_stops_it_with_one_line(
    own_kafka: Stack, settings: AllSettings, processes: Processes
):
    # Enough samples through an outage that the newest are no longer kept in memory
    # and are read back from the spool's file when Kafka returns.
    settings = settings.model_copy(update={"interval_s": 0.05})
    collector = processes.start(settings_env(settings), "collect", name="collector")
    await eventually(
        lambda: asyncio.sleep(0, "sampling" in processes.log("collector")), what="collector start"
    )
    await stop_kafka(own_kafka)
    await eventually(
        lambda: asyncio.sleep(0, len(waiting(settings)) >= 150), what="samples in the spool"
    )
    # Another program (or the disk) overwrites part of the newest sample spooled.
    (segment,) = spool_directory(settings.collector_dir, settings.topic, HOST).glob("*.log")
    with segment.open("r+b") as file:
        file.seek(segment.stat().st_size - 1000)
        file.write(b"\xff" * 100)
    await start_kafka(own_kafka)

    returncode = await asyncio.to_thread(collector.wait, 90)
    log = processes.log("collector")
    assert returncode == 1, log
    (line,) = [line for line in log.splitlines() if "CRITICAL" in line]
    assert "the collector stops: delivery to Kafka died of SpoolDamaged" in line, log
    assert str(segment) in line
    assert "samples stay in the spool" in line
    assert "Traceback" not in log
    sent = [orjson.loads(value)["event_id"] for *_, value in await read_topic(settings)]
    assert sent, "the samples before the damaged one were sent"

    # The next run cuts the damaged record off, says so, and sends what is left once.
    left = [orjson.loads(payload)["event_id"] for payload in waiting(settings)]
    again = await asyncio.to_thread(run_command, settings_env(settings), "collect", "--count", "1")
    assert again.returncode == 0, again.stderr
    assert "cut short" in again.stderr
    ids = [orjson.loads(value)["event_id"] for *_, value in await read_topic(settings)]
    assert ids[: len(sent)] == sent
    assert len(ids) == len(set(ids))
    assert set(left) <= set(ids)


def test_settings_too_long_for_a_command_line_reach_the_collectors_process(tmp_path):
    # hoststream collect hands its checked settings to the process it execs into; a
    # command-line argument holds at most 128 kB (Linux), these tags make 200 kB of JSON.
    tags = ",".join(f"team-{i}=service-{i}" for i in range(5000))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTSTREAM_")}
    env |= {"HOSTSTREAM_TAGS": tags, "HOSTSTREAM_COLLECTOR_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "collect", "--once", "--print"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    sample = orjson.loads(done.stdout)
    assert len(sample["tags"]) == 5000
    assert sample["tags"][-1] == {"key": "team-4999", "value": "service-4999"}
