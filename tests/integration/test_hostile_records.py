"""Over 10,000 hostile records among good samples, through a real worker: it never
exits, every bad record is in silver.rejected and on the dead-letter topic with a
reason, every good sample is in silver once, and gold equals the exact
recomputation from silver.

The bad records come from tests/hostile.py (a seeded generator, counts printed per
kind); a few are 2-10 MB, so the test's topic allows 11 MiB messages.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from tests.hostile import Forge, bad_records, corrupted_copy, edge_samples, kinds
from tests.integration.fixtures import Processes, settings_env
from tests.integration.gold_check import (
    GOOD,
    Coordinates,
    Message,
    bronze_problems,
    drain,
    first_copies,
    gold_problems,
    md5_text,
    produce,
    report,
    sample_message,
    silver_problems,
    worker_problems,
    worker_stats,
)

pytestmark = pytest.mark.integration

HOSTS = [f"host-{n:02d}" for n in range(20)]
SAMPLES_PER_HOST = 120
STEP_S = 20
BROKEN_COPY_SHARE = 0.02
RESENT_SHARE = 0.01
TOPIC_MAX_MESSAGE_BYTES = 11 * 2**20


def hostile_stream(now: datetime, max_future_skew_s: float) -> list[Message]:
    """Good samples of every host in time order (so none is late), odd but valid edge
    samples, a few samples re-sent at once and a few preceded by a broken copy, with
    the bad records scattered among them."""
    rng = random.Random(14)
    forge = Forge(rng, HOSTS, now)
    start = now - timedelta(seconds=SAMPLES_PER_HOST * STEP_S + 60)
    good: list[list[Message]] = []
    for n in range(SAMPLES_PER_HOST):
        for host in HOSTS:
            document = synthetic_document(host, start + timedelta(seconds=n * STEP_S), rng)
            sample = sample_message(document)
            broken = [corrupted_copy(forge, document)] if rng.random() < BROKEN_COPY_SHARE else []
            again = [sample] if rng.random() < RESENT_SHARE else []
            good.append([*broken, sample, *again])
    for edge in edge_samples(rng, now, max_future_skew_s):
        good.insert(rng.randrange(len(good) + 1), [edge])
    # Bad records between the good ones, at random.
    gaps: list[list[Message]] = [[] for _ in range(len(good) + 1)]
    for bad in bad_records(forge):
        gaps[rng.randrange(len(gaps))].append(bad)
    stream = list(gaps[0])
    for messages, after in zip(good, gaps[1:], strict=True):
        stream += messages + after
    return stream


def bronze_text(value: bytes | None) -> str:
    """A Kafka value as bronze and silver.rejected keep it: text, NUL as \\x00, invalid
    UTF-8 backslash-escaped."""
    return (value or b"").decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


async def create_topic(settings: AllSettings) -> None:
    """The metrics topic, taking messages of up to 11 MiB (the broker's default is 1 MB)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    settings.topic,
                    settings.topic_partitions,
                    settings.replication_factor,
                    topic_configs={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
                )
            ]
        )
    finally:
        await admin.close()
    await ensure_topics(settings)  # the dead-letter topic


async def rejected_problems(
    database: asyncpg.Connection, bad: dict[Coordinates, Message]
) -> tuple[list[str], dict[Coordinates, str]]:
    """Every bad record in silver.rejected once, with a reason and its whole payload;
    also the reasons found, by coordinates."""
    rows = await database.fetch(
        'SELECT "partition", "offset", reason, md5(payload) AS digest FROM silver.rejected'
    )
    reasons = {(r["partition"], r["offset"]): r["reason"] for r in rows}
    digests = {(r["partition"], r["offset"]): r["digest"] for r in rows}
    problems = []
    missing = Counter(m.kind for c, m in bad.items() if c not in reasons)
    if missing:
        problems.append(
            f"silver.rejected: {sum(missing.values())} bad records missing, by kind: "
            f"{dict(missing)}"
        )
    extra = [f"{c}: {reasons[c][:100]}" for c in reasons if c not in bad]
    if extra:
        problems.append(f"silver.rejected: {len(extra)} good records rejected, e.g. {extra[:5]}")
    no_reason = [c for c, reason in reasons.items() if not reason.strip()]
    if no_reason:
        problems.append(f"silver.rejected: {len(no_reason)} rows without a reason")
    payloads = Counter(
        m.kind
        for c, m in bad.items()
        if c in digests and digests[c] != md5_text(bronze_text(m.value))
    )
    if payloads:
        problems.append(f"silver.rejected: payloads not kept whole, by kind: {dict(payloads)}")
    return problems, reasons


async def read_dead_letters(settings: AllSettings) -> list:
    """Every message of the dead-letter topic."""
    topic = f"{settings.topic}.dlq"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * 2**20,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        end = await consumer.end_offsets(partitions)
        messages = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                messages += batch
        return messages
    finally:
        await consumer.stop()


def dead_letter_problems(
    dead: list, bad: dict[Coordinates, Message], topic: str, limit: int
) -> list[str]:
    """Every bad record on the dead-letter topic, with its reason and source; as it
    was, or cut to ``limit`` bytes (key + value) with the original size in a header."""
    by_source: dict[str, list] = defaultdict(list)
    for message in dead:
        by_source[dict(message.headers).get("hoststream-source", b"").decode()].append(message)
    sources = {f"{topic}[{p}]@{o}": (p, o) for p, o in bad}
    problems = []
    missing = Counter(bad[c].kind for s, c in sources.items() if s not in by_source)
    if missing:
        problems.append(
            f"dead letters: {sum(missing.values())} bad records missing, by kind: {dict(missing)}"
        )
    extra = [s for s in by_source if s not in sources]
    if extra:
        problems.append(f"dead letters: {len(extra)} from no bad record, e.g. {extra[:5]}")
    wrong: Counter[str] = Counter()
    for source, coordinates in sources.items():
        original = bad[coordinates]
        size = len(original.key or b"") + len(original.value or b"")
        for message in by_source.get(source, []):
            headers = dict(message.headers)
            if not headers.get("hoststream-reason", b"").strip():
                wrong[f"no reason ({original.kind})"] += 1
            cut = headers.get("hoststream-truncated")
            if size > limit:
                if cut is None or int(cut) not in (size, len(original.value or b"")):
                    wrong[f"too big, no hoststream-truncated with its size ({original.kind})"] += 1
                if len(message.key or b"") + len(message.value or b"") > limit:
                    wrong[f"bigger than the limit ({original.kind})"] += 1
            elif (
                cut is not None
                or (message.value or b"") != (original.value or b"")
                or message.key != original.key
            ):
                wrong[f"not the record as it was ({original.kind})"] += 1
    if wrong:
        problems.append(f"dead letters: {dict(wrong)}")
    return problems


async def test_hostile_records_never_stop_the_worker_nor_skew_gold(
    pipeline_settings: AllSettings, processes: Processes
) -> None:
    settings = pipeline_settings
    stream = hostile_stream(datetime.now(UTC), settings.max_future_skew_s)
    counts = kinds(stream)
    size = sum(len(m.value or b"") for m in stream)
    print(f"\nhostile stream: {len(stream)} records, {size:,} B")
    for kind, count in sorted(counts.items(), key=lambda kc: -kc[1]):
        print(f"  {count:6d}  {kind}")
    assert sum(n for kind, n in counts.items() if kind != GOOD) >= 10_000

    await create_topic(settings)
    began = time.monotonic()
    where = await produce(settings, stream, max_request_size=TOPIC_MAX_MESSAGE_BYTES)
    print(f"produced in {time.monotonic() - began:.1f} s")
    began = time.monotonic()
    worker = processes.start(settings_env(settings), "worker", name="worker")
    await drain(settings, worker, lambda: processes.log("worker"), timeout_s=150)
    print(f"the worker committed the whole topic {time.monotonic() - began:.1f} s after start")

    bad = {c: m for c, m in zip(where, stream, strict=True) if m.kind != GOOD}
    first = first_copies(stream, where)
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        problems = await bronze_problems(database, where, [bronze_text(m.value) for m in stream])
        problems += await silver_problems(database, settings.topic, first)
        found, reasons = await rejected_problems(database, bad)
        problems += found
        problems += await gold_problems(database, settings)
    finally:
        await database.close()
    problems += dead_letter_problems(
        await read_dead_letters(settings), bad, settings.topic, settings.dead_letter_max_bytes
    )
    stats = await worker_stats(settings)
    resent = sum(1 for m in stream if m.kind == GOOD) - len(first)
    if stats["duplicates"] != resent:
        problems.append(f"/stats/: duplicates {stats['duplicates']}, re-sent {resent}")
    if stats["late_samples"] != 0:
        problems.append(f"/stats/: late_samples {stats['late_samples']}, none was late")
    problems += worker_problems(worker, processes.log("worker"))

    shown: set[str] = set()
    for coordinates, reason in reasons.items():
        kind = bad[coordinates].kind if coordinates in bad else GOOD
        if kind not in shown:
            shown.add(kind)
            print(f"  a reason for {kind}: {reason[:160]}")
    if reasons:
        print(f"longest reason: {max(map(len, reasons.values())):,} characters")
    assert not problems, report(problems)
