"""Benchmark of the stream core, in one run on one broker (prints figures; not a test).

  (a) a bare aiokafka consumer with orjson decode: the ceiling;
  (b) a bare Faust agent that only iterates: Faust's own floor, on asyncio's
      loop (as the issue defines it) and on uvloop (which the worker uses);
  (c) the full hoststream worker: bronze + silver + gold, both windows, PostgreSQL;
  (d) the same worker with the GCS lake too (fake-gcs-server): its medallion's rate,
      and the rate until every record is in both the medallion and the lake;
  then the latency from a sample's timestamp to its silver row at a steady rate.

It starts its own Kafka, PostgreSQL and fake-gcs-server (the local stack, in a temporary directory
on free loopback ports) and stops them at the end.

    .venv/bin/python scripts/bench_worker.py --records 100000 --rate 5000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.preflight import ensure_topics  # noqa: E402
from collector.synthetic import synthetic_document  # noqa: E402
from config import LOOPBACK, AllSettings, WorkerSettings  # noqa: E402
from stack import Stack  # noqa: E402
from stack.throwaway import scratch_dir, throwaway_settings  # noqa: E402

HOSTS = 100


def bench_settings(stack_dir: Path, batch_max_records: int) -> AllSettings:
    return throwaway_settings(
        stack_dir,
        REPO / ".hoststream" / "kafka-libs",
        topic="bench_metrics",
        data_dir=stack_dir / "worker",
        batch_max_records=batch_max_records,
    )


def records(count: int, end: datetime, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """``count`` samples of HOSTS hosts, 10 s apart per host, the last ones at ``end``."""
    start = datetime.fromtimestamp(end.timestamp() - 10 * (count // HOSTS), tz=UTC)
    out = []
    for i in range(count):
        host = f"host-{i % HOSTS:03d}"
        moment = datetime.fromtimestamp(start.timestamp() + 10 * (i // HOSTS), tz=UTC)
        out.append((host.encode(), orjson.dumps(synthetic_document(host, moment, rng))))
    return out


async def produce(settings: AllSettings, batch: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        for key, value in batch:
            await producer.send(settings.topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(batch) / (time.perf_counter() - started)


async def bare_consumer(settings: AllSettings, count: int) -> float:
    consumer = AIOKafkaConsumer(
        settings.topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id="bench-bare",
        max_poll_records=5000,
    )
    await consumer.start()
    try:
        seen, started = 0, 0.0
        while seen < count:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                if not started:
                    started = time.perf_counter()
                for message in messages:
                    orjson.loads(message.value)
                seen += len(messages)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


Progress = Callable[[dict[str, Any]], int]
"""Events done so far, from a worker's stats page."""


def acknowledged(stats: dict[str, Any]) -> int:
    return int(stats["acknowledged"])


def in_medallion_and_lake(stats: dict[str, Any]) -> int:
    return min(int(stats["acknowledged"]), int(stats["lake"]["records"]))


def watch(
    url: str,
    count: int,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    progress: Progress = acknowledged,
) -> float:
    """Events/s of a worker from its first acknowledged event until ``progress`` reaches
    ``count``."""
    first_at = first_count = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the worker exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                stats = orjson.loads(response.read())
            started, done = acknowledged(stats), progress(stats)
        except OSError:
            started = done = 0
        now = time.perf_counter()
        if started and first_at is None:
            first_at, first_count = now, started
        if done >= count and first_at is not None and first_count is not None:
            return (done - first_count) / (now - first_at)
        time.sleep(0.05)
    raise SystemExit(f"no result from {url} within {timeout_s} s")


def run_worker(
    command: list[str],
    env: dict[str, str],
    url: str,
    count: int,
    log: Path,
    progress: Progress = acknowledged,
) -> float:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            return watch(url, count, process, timeout_s=600, progress=progress)
        finally:
            process.terminate()
            process.wait(timeout=30)


def worker_env(settings: AllSettings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTSTREAM_")}
    return {**env, **settings.as_environment(), **extra}


async def latency(settings: AllSettings, rate: float, seconds: float, log: Path) -> list[float]:
    """p50 and p99 (seconds) from sample timestamp to its silver row at ``rate`` events/s.

    On a topic of its own, so the worker starts with nothing to catch up on.
    """
    settings = settings.model_copy(
        update={"topic": f"{settings.topic}_latency", "app_id": "bench-latency"}
    )
    await ensure_topics(settings)
    with log.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "app.cli", "worker", "--loglevel", "warn"],
            env=worker_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            await asyncio.sleep(8)  # join the group and create the tables before the clock runs
            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=2)
            await producer.start()
            rng, sent, started = random.Random(2), 0, time.perf_counter()
            try:
                while time.perf_counter() - started < seconds:
                    due = int((time.perf_counter() - started) * rate)
                    for _ in range(due - sent):
                        host = f"host-{sent % HOSTS:03d}"
                        document = synthetic_document(host, datetime.now(UTC), rng)
                        await producer.send(
                            settings.topic, orjson.dumps(document), key=host.encode()
                        )
                        sent += 1
                    await asyncio.sleep(0.005)
                await producer.flush()
            finally:
                await producer.stop()
            await asyncio.sleep(5)
        finally:
            worker.terminate()
            try:
                await asyncio.wait_for(worker.wait(), timeout=30)
            except TimeoutError:
                worker.kill()
                await worker.wait()
    connection = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS n, percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM ingested_at - sample_time)) AS p "
            "FROM silver.silver_performance WHERE source_topic = $1",
            settings.topic,
        )
    finally:
        await connection.close()
    print(
        f"latency: {row['n']:,} of {sent:,} samples in silver, "
        f"sent at {rate:,.0f}/s for {seconds:.0f} s"
    )
    return list(row["p"])


def timed(label: str, work: Callable[[], float]) -> float:
    print(f"{label} ...", flush=True)
    value = work()
    print(f"{label}: {value:,.0f} events/s", flush=True)
    return value


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=5_000, help="events/s for the latency run")
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument(
        "--batch-max-records",
        type=int,
        default=WorkerSettings.model_fields["batch_max_records"].default,
        help="the worker's HOSTSTREAM_BATCH_MAX_RECORDS",
    )
    args = parser.parse_args()

    with scratch_dir("hoststream-bench-") as state:
        await benchmark(args, state)


async def benchmark(args: argparse.Namespace, state: Path) -> None:
    """Start the stack in ``state`` and run the benchmark against it."""
    settings = bench_settings(state, args.batch_max_records)
    stack = Stack(settings)
    stack.install()
    stack.up(["kafka", "postgres", "gcs"])
    try:
        await ensure_topics(settings)
        batch = records(args.records, datetime.now(UTC), random.Random(1))
        size = sum(len(v) for _, v in batch) / len(batch)
        print(
            f"{args.records:,} records of {HOSTS} hosts, {size:.0f} B each, "
            f"{settings.topic_partitions} partitions"
        )
        print(f"produce: {await produce(settings, batch):,.0f} events/s")
        a = await bare_consumer(settings, args.records)
        print(f"(a) bare aiokafka consumer + orjson: {a:,.0f} events/s")
        faust_env = {
            **os.environ,
            "BENCH_BROKER": settings.faust_broker_url,
            "BENCH_TOPIC": settings.topic,
            "BENCH_WEB_PORT": str(settings.web_port),
        }
        baselines = {}
        for loop in ("asyncio", "uvloop"):
            baselines[loop] = timed(
                f"(b) bare Faust agent, iterating, {loop} loop",
                lambda loop=loop: run_worker(
                    [
                        sys.executable,
                        str(REPO / "scripts" / "bench_faust_iterate.py"),
                        "worker",
                        "-l",
                        "warn",
                    ],
                    {
                        **faust_env,
                        "BENCH_APP_ID": f"bench-faust-{loop}",
                        "BENCH_UVLOOP": "1" if loop == "uvloop" else "0",
                    },
                    f"http://{LOOPBACK}:{settings.web_port}/count/",
                    args.records,
                    state / f"faust-{loop}.log",
                ),
            )
        c = timed(
            "(c) hoststream worker: bronze + silver + gold (5 min, 1 h), PostgreSQL",
            lambda: run_worker(
                [sys.executable, "-m", "app.cli", "worker", "--loglevel", "warn"],
                # Gold's rows after every batch: acknowledgements, which the clock
                # reads, then come per batch instead of in 5 s steps, and the worker
                # does the most database work it can.
                worker_env(
                    settings,
                    HOSTSTREAM_APP_ID="bench-worker",
                    HOSTSTREAM_GOLD_UPSERT_INTERVAL_S="0",
                    HOSTSTREAM_LAKE_ENABLED="false",
                ),
                f"http://{LOOPBACK}:{settings.web_port}/stats/",
                args.records,
                state / "worker.log",
            ),
        )
        lake: dict[str, float] = {}
        for label, progress in (
            ("medallion", acknowledged),
            ("medallion and lake", in_medallion_and_lake),
        ):
            lake[label] = timed(
                f"(d) hoststream worker with the GCS lake: records in the {label}",
                lambda label=label, progress=progress: run_worker(
                    [sys.executable, "-m", "app.cli", "worker", "--loglevel", "warn"],
                    worker_env(
                        settings,
                        HOSTSTREAM_APP_ID=f"bench-worker-lake-{label.replace(' ', '-')}",
                        HOSTSTREAM_GOLD_UPSERT_INTERVAL_S="0",
                        HOSTSTREAM_LAKE_ENABLED="true",
                        # The last object of each partition is a quiet one: cut it at once.
                        HOSTSTREAM_LAKE_MAX_AGE_S="1",
                    ),
                    f"http://{LOOPBACK}:{settings.web_port}/stats/",
                    args.records,
                    state / f"worker-lake-{label.replace(' ', '-')}.log",
                    progress,
                ),
            )
        print(
            f"(d)/(c): medallion {lake['medallion'] / c:.2f}, "
            f"medallion and lake {lake['medallion and lake'] / c:.2f}"
        )
        b, b_uvloop = baselines["asyncio"], baselines["uvloop"]
        print(
            f"(c)/(a) = {c / a:.3f}   (c)/(b) = {c / b:.2f}   (c)/(b, uvloop) = {c / b_uvloop:.2f}"
        )
        p50, p99 = await latency(settings, args.rate, args.latency_seconds, state / "latency.log")
        print(f"latency sample -> silver row: p50 {p50:.3f} s, p99 {p99:.3f} s")
    finally:
        stack.down()


if __name__ == "__main__":
    asyncio.run(main())
