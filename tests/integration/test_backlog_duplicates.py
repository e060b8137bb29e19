"""A backlog with duplicates re-sent up to 10 minutes later, consumed in large batches:
the first copy of each sample counts, so gold equals the exact recomputation from
silver, and ``/stats/`` counts the copies as duplicates, never as late samples.

The scenario of issue 14: a sample and its copy in one batch let the copy win, and
gold then judged it late and counted the sample nowhere.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from tests.integration.fixtures import Processes, settings_env
from tests.integration.gold_check import (
    Message,
    bronze_problems,
    drain,
    first_copies,
    gold_problems,
    produce,
    report,
    sample_message,
    silver_problems,
    worker_problems,
    worker_stats,
)

pytestmark = pytest.mark.integration

HOSTS = 20
BACKLOG_S = 30 * 60
RESENT_SHARE = 0.02
RESENT_WITHIN_S = 10 * 60


def backlog(now: datetime, rng: random.Random) -> tuple[list[Message], int]:
    """Every host's samples at 1 s over the last 30 minutes, in time order, with 2 % of
    them sent again up to 10 minutes after the original; and how many were re-sent."""
    start = now - timedelta(seconds=BACKLOG_S + 60)
    # (when sent, order of creation, message): a copy goes out after its original.
    outgoing: list[tuple[float, int, Message]] = []
    resent = 0
    for second in range(BACKLOG_S):
        for host in range(HOSTS):
            document = synthetic_document(
                f"host-{host:02d}", start + timedelta(seconds=second), rng, interval_s=1.0
            )
            message = sample_message(document)
            outgoing.append((second, len(outgoing), message))
            if rng.random() < RESENT_SHARE:
                resent += 1
                later = second + rng.uniform(0, RESENT_WITHIN_S)
                outgoing.append((later, len(outgoing), message))
    outgoing.sort(key=lambda sent: sent[:2])
    return [message for _, _, message in outgoing], resent


async def test_a_backlog_with_late_copies_gives_exact_gold(
    pipeline_settings: AllSettings, processes: Processes
) -> None:
    settings = pipeline_settings
    assert settings.batch_max_records == 5000, "the scenario runs at the default batch size"
    messages, resent = backlog(datetime.now(UTC), random.Random(14))
    print(f"backlog: {len(messages)} records, {len(messages) - resent} samples, {resent} re-sent")

    await ensure_topics(settings)
    where = await produce(settings, messages)
    started = time.monotonic()
    worker = processes.start(settings_env(settings), "worker", name="worker")
    await drain(settings, worker, lambda: processes.log("worker"), timeout_s=120)
    print(
        f"backlog: the worker committed everything {time.monotonic() - started:.1f} s after start"
    )

    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        problems = [
            *await bronze_problems(database, where),
            *await silver_problems(database, settings.topic, first_copies(messages, where)),
            *await gold_problems(database, settings),
        ]
    finally:
        await database.close()
    stats = await worker_stats(settings)
    if stats["duplicates"] != resent:
        problems.append(f"/stats/: duplicates {stats['duplicates']}, re-sent {resent}")
    if stats["late_samples"] != 0:
        problems.append(f"/stats/: late_samples {stats['late_samples']}, none was late")
    problems += worker_problems(worker, processes.log("worker"))
    assert not problems, report(problems)
