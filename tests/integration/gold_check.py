"""What the end-to-end tests of a whole stream check once a worker has consumed it.

Gold is compared with an exact recomputation from silver in SQL (nearest-rank
``percentile_disc`` for p95), so the check holds whatever the stream was, as long
as no sample of it is late. The other checks say what a user would look for:
every record in bronze once, every sample in silver once (its first copy in
Kafka order), and a worker still running.

Each check returns the problems it found as lines, so that a failing test lists
everything that is wrong at once, not only the first difference.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from config import AllSettings
from schemas.quantiles import SKETCH_MIN_PERCENT, SKETCH_RELATIVE_ACCURACY
from schemas.windows import WINDOW_SIZES_S
from tests.integration.fixtures import committed_up_to_end, eventually

GOOD = "good"
"""The kind of a valid sample; every other kind names a way of being bad."""

Coordinates = tuple[int, int]
"""(partition, offset) of a produced record."""


@dataclass(frozen=True)
class Message:
    """One record a test produces, and what the worker must make of it."""

    key: bytes | None
    value: bytes | None
    kind: str = GOOD
    event_id: str | None = None
    """The sample's event_id, for good records."""
    timestamp_ms: int | None = None
    """The Kafka record timestamp; None: the producer's clock."""


def sample_message(document: dict[str, Any], **fields: Any) -> Message:
    """A valid sample as a collector sends it: keyed by host_id."""
    return Message(
        key=document["host_id"].encode(),
        value=orjson.dumps(document),
        event_id=document["event_id"],
        **fields,
    )


async def produce(
    settings: AllSettings, messages: list[Message], max_request_size: int = 1_048_576
) -> list[Coordinates]:
    """Send ``messages`` in order; where each landed, in the same order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        max_request_size=max_request_size,
        linger_ms=20,
    )
    await producer.start()
    try:
        sent = [
            await producer.send(settings.topic, m.value, key=m.key, timestamp_ms=m.timestamp_ms)
            for m in messages
        ]
        landed = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return [(meta.partition, meta.offset) for meta in landed]


def first_copies(messages: Iterable[Message], where: list[Coordinates]) -> dict[str, Coordinates]:
    """event_id -> coordinates of its first good copy in Kafka order (the one silver keeps).

    Copies of one host share a partition (keyed by host), so production order is
    Kafka order among them.
    """
    first: dict[str, Coordinates] = {}
    for message, coordinates in zip(messages, where, strict=True):
        if message.kind == GOOD and message.event_id is not None:
            first.setdefault(message.event_id, coordinates)
    return first


def worker_problems(worker: subprocess.Popen[bytes], log: str) -> list[str]:
    """The worker must still run and must never have logged a CRITICAL line."""
    problems = []
    if worker.poll() is not None:
        problems.append(f"worker: exited with status {worker.returncode}")
    critical = [line for line in log.splitlines() if "CRITICAL" in line]
    if critical:
        problems.append(f"worker: {len(critical)} CRITICAL log lines, first: {critical[0][:500]}")
    return problems


async def drain(
    settings: AllSettings, worker: subprocess.Popen[bytes], log: Callable[[], str], timeout_s: float
) -> None:
    """Wait until the worker's group committed the whole topic; fail at once, with the
    end of its log, if the worker exits first."""

    async def committed() -> Any:
        if worker.poll() is not None:
            lines = log().splitlines()
            critical = "\n".join(line for line in lines if "CRITICAL" in line)
            tail = "\n".join(lines[-30:])
            pytest.fail(
                f"the worker exited with status {worker.returncode}: {critical}\n"
                f"its log ends:\n{tail}"
            )
        return await committed_up_to_end(settings)

    await eventually(committed, timeout_s=timeout_s, what="the worker to commit the whole topic")


async def worker_stats(settings: AllSettings) -> dict[str, Any]:
    """The worker's ``/stats/`` page."""
    url = f"http://{settings.web_host}:{settings.web_port}/stats/"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        stats: dict[str, Any] = await response.json()
        return stats


async def bronze_problems(
    database: asyncpg.Connection, where: list[Coordinates], payloads: list[str] | None = None
) -> list[str]:
    """Every produced record in bronze exactly once, and with ``payloads`` (in production
    order, as bronze keeps them) when given."""
    rows = await database.fetch(
        'SELECT "partition", "offset", md5(payload) AS digest FROM bronze.bronze_performance'
    )
    stored = {(r["partition"], r["offset"]): r["digest"] for r in rows}
    problems = []
    if len(rows) != len(where):
        problems.append(f"bronze: {len(rows)} rows for {len(where)} records")
    missing = set(where) - set(stored)
    if missing:
        problems.append(f"bronze: {len(missing)} records missing, e.g. {sorted(missing)[:5]}")
    if payloads is not None:
        wrong = [
            c
            for c, text in zip(where, payloads, strict=True)
            if c in stored and stored[c] != md5_text(text)
        ]
        if wrong:
            problems.append(f"bronze: {len(wrong)} payloads differ, e.g. {wrong[:5]}")
    return problems


def md5_text(text: str) -> str:
    """What PostgreSQL's md5() gives for a text value."""
    return hashlib.md5(text.encode()).hexdigest()


async def silver_problems(
    database: asyncpg.Connection, topic: str, first: dict[str, Coordinates]
) -> list[str]:
    """Silver holds exactly the good samples, once each, from their first copy."""
    rows = await database.fetch(
        "SELECT event_id, source_topic, source_partition, source_offset "
        "FROM silver.silver_performance"
    )
    stored = {r["event_id"]: r for r in rows}
    problems = []
    missing = set(first) - set(stored)
    extra = set(stored) - set(first)
    if missing:
        problems.append(f"silver: {len(missing)} good samples missing, e.g. {sorted(missing)[:3]}")
    if extra:
        extra_sources = [
            f"{stored[e]['source_partition']}@{stored[e]['source_offset']}" for e in sorted(extra)
        ]
        problems.append(
            f"silver: {len(extra)} rows that are no good sample, from {extra_sources[:5]}"
        )
    later = [
        e
        for e, (partition, offset) in first.items()
        if e in stored
        and (stored[e]["source_topic"], stored[e]["source_partition"], stored[e]["source_offset"])
        != (topic, partition, offset)
    ]
    if later:
        problems.append(f"silver: {len(later)} samples kept from a later copy, not the first")
    return problems


_RECOMPUTE = """
SELECT host_id,
       to_timestamp((floor(extract(epoch FROM sample_time) / $1) * $1)::double precision)
           AS window_start,
       count(*) AS sample_count,
       avg(cpu_percent) AS cpu_avg_percent,
       max(cpu_percent) AS cpu_max_percent,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY cpu_percent) AS cpu_p95_percent,
       avg(memory_percent) AS memory_avg_percent,
       max(memory_percent) AS memory_max_percent,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY memory_percent) AS memory_p95_percent,
       sum(net_bytes_sent_delta) AS net_bytes_sent,
       sum(net_bytes_recv_delta) AS net_bytes_recv,
       max(disk_max_percent) AS disk_max_percent
FROM silver.silver_performance
GROUP BY 1, 2
"""


def within_sketch_bound(sketched: float, exact: float) -> bool:
    """The p95 sketch's documented accuracy (schemas/windows.py): relative for values of
    at least SKETCH_MIN_PERCENT, below that bound absolutely."""
    if exact < SKETCH_MIN_PERCENT:
        return sketched < SKETCH_MIN_PERCENT
    # A hair of slack for the float arithmetic of the bucket's value.
    return abs(sketched - exact) <= SKETCH_RELATIVE_ACCURACY * exact * (1 + 1e-9)


def _row_problems(
    name: str, gold: asyncpg.Record, exact: asyncpg.Record, settings: AllSettings
) -> list[str]:
    """What differs between one gold row and its recomputation, as 'column got != exact'."""
    differences = []

    def differ(column: str, got: Any, want: Any) -> None:
        differences.append(f"{column} {got!r} != {want!r}")

    for column in ("sample_count", "net_bytes_sent", "net_bytes_recv"):
        if int(gold[column]) != int(exact[column]):
            differ(column, gold[column], int(exact[column]))
    for column in ("cpu_max_percent", "memory_max_percent", "disk_max_percent"):
        if gold[column] != exact[column]:
            differ(column, gold[column], exact[column])
    for column in ("cpu_avg_percent", "memory_avg_percent"):
        if not math.isclose(gold[column], exact[column], rel_tol=1e-9, abs_tol=1e-9):
            differ(column, gold[column], exact[column])
    for column in ("cpu_p95_percent", "memory_p95_percent"):
        if not within_sketch_bound(gold[column], exact[column]):
            differ(column, gold[column], exact[column])
    length = timedelta(seconds=WINDOW_SIZES_S[name])
    if gold["window_end"] - gold["window_start"] != length:
        differ("window length", gold["window_end"] - gold["window_start"], length)

    cpu_threshold = settings.anomaly_cpu_p95_percent
    cpu_p95 = exact["cpu_p95_percent"]
    # Gold flags on the sketch's p95: within its bound of the threshold either flag is right.
    if not within_sketch_bound(cpu_threshold, cpu_p95) and gold["cpu_anomaly"] != (
        cpu_p95 > cpu_threshold
    ):
        differ("cpu_anomaly", gold["cpu_anomaly"], cpu_p95 > cpu_threshold)
    for flag, column, threshold in (
        ("memory_anomaly", "memory_max_percent", settings.anomaly_memory_max_percent),
        ("disk_anomaly", "disk_max_percent", settings.anomaly_disk_max_percent),
    ):
        if gold[flag] != (exact[column] > threshold):
            differ(flag, gold[flag], exact[column] > threshold)
    return differences


async def gold_problems(database: asyncpg.Connection, settings: AllSettings) -> list[str]:
    """Gold's rows against the exact recomputation from silver, every window size.

    Holds only for streams without late samples: the recomputation counts every
    silver row.
    """
    problems = []
    for name, size_s in WINDOW_SIZES_S.items():
        exact = {
            (r["host_id"], r["window_start"]): r for r in await database.fetch(_RECOMPUTE, size_s)
        }
        gold = {
            (r["host_id"], r["window_start"]): r
            for r in await database.fetch(f"SELECT * FROM gold.perf_{name}_summary")
        }
        missing = sorted(set(exact) - set(gold), key=_readable)
        extra = sorted(set(gold) - set(exact), key=_readable)
        if missing:
            problems.append(
                f"gold {name}: {len(missing)} of {len(exact)} windows missing, "
                f"e.g. {[_readable(k) for k in missing[:5]]}"
            )
        if extra:
            problems.append(
                f"gold {name}: {len(extra)} windows without silver rows, "
                f"e.g. {[_readable(k) for k in extra[:5]]}"
            )
        differing = {
            key: differences
            for key in sorted(set(exact) & set(gold), key=_readable)
            if (differences := _row_problems(name, gold[key], exact[key], settings))
        }
        if differing:
            problems.append(f"gold {name}: {len(differing)} of {len(exact)} windows differ")
            problems += [
                f"  {_readable(key)}: {', '.join(differences)}"
                for key, differences in list(differing.items())[:10]
            ]
    return problems


def _readable(key: tuple[str, datetime]) -> str:
    host, start = key
    return f"{host[:40]} {start:%Y-%m-%dT%H:%M}Z"


def report(problems: list[str], limit: int = 60) -> str:
    """Problems as the message of a failed assertion."""
    shown = problems[:limit]
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(shown) + more
