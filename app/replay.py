"""``hoststream replay``: the lake's records of some event hours, produced back to a topic.

Each partition's objects are read in offset order, so the records go back in the order
Kafka had them (late samples stay late), each to the partition it came from, with its
key and Kafka timestamp; the producer is idempotent and waits for every replica
(acks=all). An object is checked whole before anything of it is produced: a bad one
(not NDJSON, a line that is not a record, offsets that do not follow its name) stops
the replay, or with ``--skip-bad`` is reported and left out.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from app.preflight import ensure_topics
from config import WorkerSettings
from schemas.lake import (
    BadObject,
    LakeRecord,
    ObjectName,
    hour_prefix,
    hour_start,
    parse_object_name,
    read_object,
)
from sinks.gcs import GcsBucket

PROGRESS_EVERY_S = 1.0
REPLAY_PATIENCE_S = 60.0
"""How long a replay waits out GCS not answering mid-way before it stops (the records
produced so far stay; running it again produces the hour again, which silver and gold
take once)."""
MAX_REQUEST_BYTES = 64 * 2**20
"""The producer sends any record the topic takes; the broker refuses larger ones."""

_REBUILD = (
    ("silver.silver_performance", "sample_time"),
    ("gold.perf_5min_summary", "window_start"),
    ("gold.perf_1h_summary", "window_start"),
)
"""The rows --rebuild deletes: their key (event_id, or host and window) would keep the
rows made under the old rules. Bronze and silver.rejected are keyed by the Kafka record,
and a replayed record is a new one: they keep both."""


class ReplayStopped(Exception):
    """The replay stopped before producing anything of an object; the message says why."""


@dataclass
class Replayed:
    """What a replay produced, and the bad objects it left out."""

    records: int = 0
    bytes: int = 0
    objects: int = 0
    bad: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Records per second so far."""
        return self.records / max(time.monotonic() - self.started, 1e-9)


async def replay(
    settings: WorkerSettings,
    first_hour: int,
    last_hour: int,
    *,
    hosts: Sequence[str] = (),
    to_topic: str | None = None,
    skip_bad: bool = False,
    rebuild: bool = False,
    echo: Callable[[str], None] = print,
) -> Replayed:
    """Produce the lake's records of event hours ``first_hour`` to ``last_hour`` (both
    included; hours since 1970-01-01T00Z) of ``settings.topic`` to ``to_topic`` (default:
    the same topic), only ``hosts``' when given (by Kafka key).

    Raises :class:`ReplayStopped` for a bad object (unless ``skip_bad``), a topic with
    too few partitions, before producing anything of that object;
    :class:`~sinks.gcs.GcsUnreachable` when GCS does not answer (at the start, or for
    REPLAY_PATIENCE_S later on); :class:`~sinks.gcs.BucketUnusable` for a bucket missing
    or forbidden.
    """
    target = to_topic or settings.topic
    # A command waits for nobody for long: GCS away mid-replay ends it (see _unreachable).
    bucket = GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host or None, REPLAY_PATIENCE_S)
    done = Replayed()
    try:
        await bucket.answering()
        partitions = await _objects(bucket, settings.topic, first_hour, last_hour, skip_bad, done)
        await ensure_topics(settings.model_copy(update={"topic": target}))
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_request_size=MAX_REQUEST_BYTES,
            linger_ms=20,
        )
        await producer.start()
        try:
            available = await producer.partitions_for(target)
            missing = sorted(set(partitions) - set(available))
            if missing:
                raise ReplayStopped(
                    f"{target} has {len(available)} partitions; the lake holds records of "
                    f"partitions {missing}: replay to a topic with at least as many"
                )
            if rebuild:
                await _delete_rows(settings, first_hour, last_hour, hosts, echo)
            keys = {host.encode() for host in hosts}
            shown = time.monotonic()
            for names in partitions.values():
                for name in names:
                    records = await _checked(bucket, name, skip_bad, done, echo)
                    if keys:
                        records = [r for r in records if r.key in keys]
                    await _produce(producer, target, records)
                    done.objects += 1
                    done.records += len(records)
                    done.bytes += sum(len(r.value or b"") + len(r.key or b"") for r in records)
                    if time.monotonic() - shown >= PROGRESS_EVERY_S:
                        shown = time.monotonic()
                        echo(_progress(done))
        finally:
            await producer.stop()
    finally:
        await bucket.close()
    return done


async def _objects(
    bucket: GcsBucket, topic: str, first_hour: int, last_hour: int, skip_bad: bool, done: Replayed
) -> dict[int, list[ObjectName]]:
    """The objects of the hours, by partition, each partition's in offset order."""
    partitions: dict[int, list[ObjectName]] = defaultdict(list)
    for hour in range(first_hour, last_hour + 1):
        for name in await bucket.names(hour_prefix(topic, hour)):
            try:
                parsed = parse_object_name(name, topic)
            except BadObject as exc:
                if not skip_bad:
                    raise ReplayStopped(f"bad object {exc}; nothing was produced") from None
                done.bad.append(str(exc))
                continue
            partitions[parsed.partition].append(parsed)
    # Kafka order within a partition: hours interleave when samples arrive late.
    return {p: sorted(names) for p, names in sorted(partitions.items())}


async def _checked(
    bucket: GcsBucket, name: ObjectName, skip_bad: bool, done: Replayed, echo: Callable[[str], None]
) -> list[LakeRecord]:
    """The object's records, all checked; none when it is bad and ``skip_bad``."""
    try:
        return list(read_object(name, await bucket.read(name.name)))
    except BadObject as exc:
        if not skip_bad:
            raise ReplayStopped(
                f"bad object {exc}; nothing of it was produced ({done.records:,} records of "
                f"the objects before it were); --skip-bad leaves such objects out"
            ) from None
        done.bad.append(str(exc))
        echo(f"skipped bad object {exc}")
        return []


async def _produce(producer: AIOKafkaProducer, topic: str, records: list[LakeRecord]) -> None:
    """Send ``records`` in order and wait until the broker has them all."""
    sent = [
        await producer.send(
            topic,
            r.value,
            key=r.key,
            partition=r.partition,
            # -1: the record had none; the producer then stamps its own clock.
            timestamp_ms=r.timestamp_ms if r.timestamp_ms >= 0 else None,
        )
        for r in records
    ]
    await asyncio.gather(*sent)


async def _delete_rows(
    settings: WorkerSettings,
    first_hour: int,
    last_hour: int,
    hosts: Sequence[str],
    echo: Callable[[str], None],
) -> None:
    start, end = hour_start(first_hour), hour_start(last_hour) + timedelta(hours=1)
    connection = await asyncpg.connect(settings.postgres_dsn.get_secret_value(), timeout=10)
    try:
        async with connection.transaction():
            for table, column in _REBUILD:
                status = await connection.execute(
                    f"DELETE FROM {table} WHERE {column} >= $1 AND {column} < $2 "
                    "AND (cardinality($3::text[]) = 0 OR host_id = ANY($3::text[]))",
                    start,
                    end,
                    list(hosts),
                )
                echo(f"--rebuild: deleted {status.rsplit(' ', 1)[-1]} rows of {table}")
    finally:
        await connection.close()


def _progress(done: Replayed) -> str:
    return (
        f"  {done.records:,} records, {done.bytes / 1e6:,.1f} MB, "
        f"{done.rate:,.0f} records/s, {done.objects:,} objects"
    )


def summary(done: Replayed, target: str, first_hour: int, last_hour: int) -> str:
    """The closing lines of ``hoststream replay``."""
    hours = last_hour - first_hour + 1
    lines = [
        f"replayed {done.records:,} records ({done.bytes / 1e6:,.1f} MB) from "
        f"{done.objects:,} objects of {hours} event hour(s) from "
        f"{hour_start(first_hour):%Y-%m-%dT%H} UTC to {target} in "
        f"{time.monotonic() - done.started:.1f} s ({done.rate:,.0f} records/s)"
    ]
    if done.bad:
        lines.append(f"left out {len(done.bad)} bad object(s):")
        lines += [f"  {bad}" for bad in done.bad]
    return "\n".join(lines)
