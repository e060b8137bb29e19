"""The raw data lake against real Kafka and fake-gcs-server: the objects a known stream
gives, exactly; a worker killed with SIGKILL while it uploads; GCS stopped for 30 s
under a stream. In each, every offset of the topic is in the lake exactly once."""

from __future__ import annotations

import asyncio
import random
import re
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.worker import lake_agent
from collector.synthetic import synthetic_document
from config import AllSettings
from schemas.lake import (
    EPOCH,
    HOUR,
    LakeRecord,
    ObjectName,
    hour_prefix,
    parse_object_name,
    read_object,
)
from sinks.gcs import GcsBucket
from stack import Stack
from tests.hostile import KAFKA_TIMESTAMPS_MS, Forge
from tests.integration.fixtures import (
    CommitProgress,
    Processes,
    committed_up_to_end,
    eventually,
    run_command,
    settings_env,
)
from tests.integration.gold_check import Message, produce, sample_message, worker_stats
from tests.integration.test_hostile_records import TOPIC_MAX_MESSAGE_BYTES, create_topic
from tests.integration.test_postgres_outage import OUTAGE_S, SteadyStream

pytestmark = pytest.mark.integration

Kept = tuple[bytes | None, bytes | None, int]
"""What the lake must keep of a record: key, value, Kafka timestamp."""


async def topic_records(settings: AllSettings) -> dict[tuple[int, int], Kept]:
    """Every record of the topic by (partition, offset): the ground truth."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=TOPIC_MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: dict[tuple[int, int], Kept] = {}
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                found |= {(m.partition, m.offset): (m.key, m.value, m.timestamp) for m in batch}
        return found
    finally:
        await consumer.stop()


async def lake_contents(settings: AllSettings) -> list[tuple[ObjectName, list[LakeRecord]]]:
    """The topic's objects in the lake and their records, by partition and first offset."""
    bucket = GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host)
    try:
        names = await bucket.names(f"raw/{settings.topic}/")
        found = []
        for name in names:
            parsed = parse_object_name(name, settings.topic)
            found.append((parsed, list(read_object(parsed, await bucket.read(name)))))
        return sorted(found, key=lambda item: item[0])
    finally:
        await bucket.close()


async def lake_committed(settings: AllSettings) -> CommitProgress:
    """How far the lake's consumer group has committed the topic."""
    return await committed_up_to_end(
        settings.model_copy(update={"app_id": f"{settings.app_id}-lake"})
    )


def exactly_once_problems(
    contents: list[tuple[ObjectName, list[LakeRecord]]], truth: dict[tuple[int, int], Kept]
) -> list[str]:
    """Every record of the topic in the lake once, as sent, and no two objects overlapping."""
    problems = []
    seen: dict[tuple[int, int], str] = {}
    previous_end: dict[int, int] = {}
    for name, records in contents:
        if name.first_offset < previous_end.get(name.partition, 0):
            problems.append(f"{name.name} overlaps the object before it")
        previous_end[name.partition] = records[-1].offset + 1 if records else name.first_offset
        for r in records:
            where = (r.partition, r.offset)
            if where in seen:
                problems.append(f"{where} is in {seen[where]} and in {name.name}")
            seen[where] = name.name
            if where in truth and truth[where] != (r.key, r.value, r.timestamp_ms):
                problems.append(f"{where} differs from the topic's record")
    missing = sorted(set(truth) - set(seen))
    if missing:
        problems.append(f"{len(missing)} of {len(truth)} records missing, e.g. {missing[:5]}")
    extra = sorted(set(seen) - set(truth))
    if extra:
        problems.append(f"{len(extra)} records that are not the topic's, e.g. {extra[:5]}")
    return problems


def expected_hour(value: bytes | None, timestamp_ms: int) -> int:
    """The event hour as the README states it, written out again here."""
    try:
        moment = datetime.fromisoformat(orjson.loads(value or b"")["timestamp"])
        if moment.tzinfo is not None:
            return (moment.astimezone(UTC) - EPOCH) // HOUR
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, OverflowError):
        pass
    if 0 <= timestamp_ms < 253_402_300_800_000:
        return timestamp_ms // 3_600_000
    return 0


def expected_objects(
    truth: dict[tuple[int, int], Kept], topic: str, max_records: int, large: int
) -> list[tuple[str, list[int]]]:
    """(name, offsets) of each object, for a stream whose records are either over
    ``large`` bytes (each an object of its own) or so small that max_records of them
    never reach lake_max_bytes; each partition's last object is a quiet one."""
    objects: list[tuple[str, list[int]]] = []
    for partition in sorted({p for p, _ in truth}):
        run: list[int] = []
        run_hour, run_large = 0, False
        for offset in sorted(o for p, o in truth if p == partition):
            key, value, timestamp_ms = truth[partition, offset]
            hour = expected_hour(value, timestamp_ms)
            is_large = len(key or b"") + len(value or b"") > large
            if run and (hour != run_hour or len(run) == max_records or is_large or run_large):
                objects.append((_name(topic, partition, run[0], run_hour), run))
                run = []
            if not run:
                run_hour, run_large = hour, is_large
            run.append(offset)
        if run:
            objects.append((_name(topic, partition, run[0], run_hour), run))
    return objects


def _name(topic: str, partition: int, first: int, hour: int) -> str:
    return f"{hour_prefix(topic, hour)}{topic}+{partition}+{first}.ndjson"


def as_written(contents: list[tuple[ObjectName, list[LakeRecord]]]) -> list[tuple[str, list[int]]]:
    """The lake's objects in the form :func:`expected_objects` gives."""
    return [(name.name, [r.offset for r in records]) for name, records in contents]


def known_stream(hosts: list[str], samples: int, start: datetime) -> list[Message]:
    """Good samples of ``hosts`` every 30 s from ``start`` (in time order: none is late)."""
    rng = random.Random(17)
    return [
        sample_message(synthetic_document(host, start + timedelta(seconds=30 * n), rng))
        for n in range(samples)
        for host in hosts
    ]


def hostile_among(good: list[Message], now: datetime) -> list[Message]:
    """Bad records of several kinds scattered among ``good``, some with odd Kafka
    timestamps, and four of 2-10 MB."""
    rng = random.Random(18)
    forge = Forge(rng, ["host-00", "host-01"], now)
    bad = [
        *(forge.not_json() for _ in range(20)),
        *(forge.invalid_utf8() for _ in range(10)),
        *(forge.empty() for _ in range(10)),
        *(forge.wrong_key() for _ in range(10)),
        *(forge.bad_timestamp() for _ in range(10)),
        *(forge.huge(n) for n in (0, 1, 4, 5)),
    ]
    stream = list(good)
    for n, (key, value) in enumerate(bad):
        odd = KAFKA_TIMESTAMPS_MS[n % len(KAFKA_TIMESTAMPS_MS)] if n % 7 == 0 else None
        stream.insert(rng.randrange(len(stream) + 1), Message(key, value, "bad", None, odd))
    return stream


async def test_a_known_stream_gives_exactly_the_expected_objects(pipeline_settings: AllSettings):
    settings = pipeline_settings.model_copy(
        update={"lake_max_records": 40, "lake_max_bytes": 200_000, "lake_max_age_s": 2.0}
    )
    await create_topic(settings)
    start = datetime(2026, 11, 22, 10, 50, tzinfo=UTC)  # the stream crosses 11:00
    hosts = [f"host-{n:02d}" for n in range(12)]
    stream = hostile_among(known_stream(hosts, 25, start), start)
    await produce(settings, stream, max_request_size=TOPIC_MAX_MESSAGE_BYTES)
    truth = await topic_records(settings)

    lake = lake_agent(settings)
    running = asyncio.create_task(lake.run())
    try:
        await eventually(lambda: lake_committed(settings), timeout_s=60, what="the lake")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await lake.bucket.close()

    contents = await lake_contents(settings)
    assert exactly_once_problems(contents, truth) == []
    expected = expected_objects(truth, settings.topic, 40, large=200_000)
    assert as_written(contents) == expected
    assert len(expected) > 4 * 3  # several objects per partition, of two hours


async def test_a_worker_killed_while_it_uploads_leaves_every_offset_once(
    pipeline_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings.model_copy(
        update={"lake_max_records": 30, "lake_max_age_s": 1.0, "batch_max_records": 200}
    )
    await create_topic(settings)
    hosts = [f"host-{n:02d}" for n in range(40)]
    stream = known_stream(hosts, 100, datetime(2026, 11, 22, 10, 40, tzinfo=UTC))
    await produce(settings, stream)
    truth = await topic_records(settings)
    env = settings_env(settings)

    worker = processes.start(env, "worker", name="worker")

    async def a_third_committed() -> bool:
        assert worker.poll() is None, processes.log("worker")[-3000:]
        progress = await lake_committed(settings)
        return sum(committed for committed, _ in progress.values()) >= len(truth) // 3

    await eventually(a_third_committed, timeout_s=90, what="a third of the lake committed")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed_at = await lake_committed(settings)
    assert not killed_at, "the worker finished before it was killed: nothing to test"

    worker = processes.start(env, "worker", name="worker-again")
    await eventually(lambda: lake_committed(settings), timeout_s=90, what="the lake")
    processes.stop(worker)

    contents = await lake_contents(settings)
    assert exactly_once_problems(contents, truth) == []
    # Every cut is made by a rule on the records, so the rerun cut the same objects.
    expected = expected_objects(truth, settings.topic, 30, large=settings.lake_max_bytes)
    assert as_written(contents) == expected


async def test_gcs_stopped_under_a_stream_loses_and_doubles_nothing(
    pipeline_settings: AllSettings, stack_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings.model_copy(update={"lake_max_records": 100, "lake_max_age_s": 2.0})
    await create_topic(settings)
    worker = processes.start(settings_env(settings), "worker", name="worker")
    stack = Stack(stack_settings)
    gcs = stack.service("gcs")
    stream = SteadyStream(settings)
    stream.start()
    try:

        async def lake_stats() -> dict[str, Any]:
            assert worker.poll() is None, processes.log("worker")[-3000:]
            try:
                stats: dict[str, Any] = (await worker_stats(settings))["lake"]
                return stats
            except OSError:
                return {}  # its web server is not up yet

        async def writing() -> bool:
            return bool((await lake_stats()).get("objects"))

        await eventually(writing, timeout_s=60, what="the lake to write objects")
        await asyncio.to_thread(gcs.stop)
        await asyncio.sleep(OUTAGE_S / 2)
        during = await lake_stats()
        await asyncio.sleep(OUTAGE_S / 2)
        await asyncio.to_thread(stack.up, ["gcs"])
        await asyncio.sleep(3)
    finally:
        await stream.stop()
    await eventually(lambda: lake_committed(settings), timeout_s=60, what="the lake")
    processes.stop(worker)

    assert (during["gcs_waiting_s"] or 0) > 5, during
    log = processes.log("worker")
    assert log.count("GCS is unreachable") == 1, log[-3000:]
    assert log.count("GCS is reachable again") == 1, log[-3000:]
    truth = await topic_records(settings)
    assert len(truth) > OUTAGE_S * 40
    assert exactly_once_problems(await lake_contents(settings), truth) == []


def test_run_writes_lake_objects_and_its_progress_line_shows_them(pipeline_settings: AllSettings):
    settings = pipeline_settings.model_copy(update={"lake_max_age_s": 2.0})
    done = run_command(
        settings_env(settings), "run", "--duration", "20", "--interval", "1", timeout_s=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"lake   gs://{settings.gcs_bucket}/raw/{settings.topic}/" in done.stdout
    objects = [int(n) for n in re.findall(r"; lake (\d+) objects", done.stdout)]
    assert objects, done.stdout
    assert objects[-1] >= 1, done.stdout
