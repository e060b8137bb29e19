"""Benchmark of the worker against the fleet's size, in one run on one broker
(prints a table; not a test).

For each host count (100, 1,000 and 10,000 by default) it produces a backlog of
samples, 10 s apart per host, to a topic of its own, then starts a worker on it:

- records/s through every stage, from the worker's first processed record to its
  last (``processed`` at ``/stats/``; acknowledgements come a checkpoint at a time);
- the worker's RSS when 250k, 500k and 1M records are processed (or all of a
  shorter run);
- restart after ``kill -9``, with the worker's RocksDB state kept, then with it
  deleted (a new pod without its volume): seconds from the new worker's start to
  its first record processed (serving), and to its first acknowledged (a
  checkpoint later, ``HOSTSTREAM_GOLD_UPSERT_INTERVAL_S``).

It starts its own Kafka and PostgreSQL (the local stack, in a temporary directory
on free loopback ports) and stops them at the end.

    .venv/bin/python scripts/bench_fleet.py --records 1000000 --hosts 100 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from bench_worker import bench_settings, worker_env
from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.preflight import ensure_topics  # noqa: E402
from collector.synthetic import synthetic_document  # noqa: E402
from config import LOOPBACK, AllSettings  # noqa: E402
from stack import Stack  # noqa: E402
from stack.throwaway import create_database, scratch_dir  # noqa: E402

INTERVAL_S = 10


@dataclass
class Restart:
    serving_s: float
    """Start to the first record through every stage (gold's state has it)."""
    acknowledged_s: float
    """Start to the first record acknowledged (one checkpoint later)."""


@dataclass
class Result:
    hosts: int
    records_per_s: float = 0.0
    rss_mb: dict[int, float] = field(default_factory=dict)
    kept: Restart | None = None
    lost: Restart | None = None


async def produce(
    settings: AllSettings, hosts: int, count: int, first: int, start_s: float
) -> None:
    """Samples ``first`` to ``first + count`` of a stream of ``hosts`` hosts starting at
    ``start_s``, 10 s apart per host; generated as they are sent."""
    # Seeded by the run too: a sample of another run would be a duplicate to silver.
    rng = random.Random(f"{hosts}:{first}")
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, max_batch_size=262_144
    )
    await producer.start()
    try:
        for i in range(first, first + count):
            host = f"host-{i % hosts:05d}"
            moment = datetime.fromtimestamp(start_s + INTERVAL_S * (i // hosts), tz=UTC)
            document = orjson.dumps(synthetic_document(host, moment, rng))
            await producer.send(settings.topic, document, key=host.encode())
        await producer.flush()
    finally:
        await producer.stop()


def stat(url: str, name: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(orjson.loads(response.read())[name])
    except OSError:
        return 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def check_gold(settings: AllSettings, count: int) -> None:
    """Every sample counted once in each window size: the run measured the whole work."""
    connection = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        for table in ("gold.perf_5min_summary", "gold.perf_1h_summary"):
            counted = await connection.fetchval(f"SELECT sum(sample_count) FROM {table}")
            if counted != count:
                raise SystemExit(f"{table} counts {counted:,} samples of {count:,}")
    finally:
        await connection.close()


def start_worker(settings: AllSettings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--loglevel", "info"],
        env=worker_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_for(
    url: str, name: str, count: int, worker: subprocess.Popen[bytes], timeout_s: float = 1200
) -> None:
    deadline = time.monotonic() + timeout_s
    while stat(url, name) < count:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with status {worker.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {count:,} records {name} in {timeout_s:.0f} s")
        time.sleep(0.02)


def kill(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait()


async def restart(settings: AllSettings, hosts: int, produced: int, log: Path) -> Restart:
    """A worker started after one record per host more was produced while none ran."""
    await produce(settings, hosts, hosts, produced, time.time() - INTERVAL_S * produced / hosts)
    url = f"http://{LOOPBACK}:{settings.web_port}/stats/"
    started = time.monotonic()
    worker = start_worker(settings, log)
    try:
        wait_for(url, "processed", 1, worker, timeout_s=300)
        serving = time.monotonic() - started
        wait_for(url, "acknowledged", 1, worker, timeout_s=300)
        return Restart(serving, time.monotonic() - started)
    finally:
        kill(worker)


async def run(base: AllSettings, hosts: int, count: int, state: Path) -> Result:
    # The medallion alone (the lake has its figures in scripts/bench_worker.py), and a
    # database of its own (silver's duplicates are judged per database).
    settings = base.model_copy(
        update={
            "topic": f"fleet_{hosts}",
            "app_id": f"bench-fleet-{hosts}",
            "lake_enabled": False,
            "postgres_dsn": SecretStr(
                await create_database(base.postgres_dsn.get_secret_value(), f"fleet_{hosts}")
            ),
        }
    )
    await ensure_topics(settings)
    print(f"{hosts:,} hosts: producing {count:,} records ...", flush=True)
    # The stream ends now: every window is open or recent, as for a live fleet.
    await produce(settings, hosts, count, 0, time.time() - INTERVAL_S * count / hosts)
    result = Result(hosts)
    log = state / f"worker-{hosts}.log"
    url = f"http://{LOOPBACK}:{settings.web_port}/stats/"
    marks = [m for m in (250_000, 500_000, 1_000_000) if m <= count] or [count]
    worker = start_worker(settings, log)
    try:
        wait_for(url, "processed", 1, worker)
        first_at, first = time.monotonic(), stat(url, "processed")
        for mark in marks:
            wait_for(url, "processed", mark, worker)
            result.rss_mb[mark] = rss_mb(worker.pid)
        wait_for(url, "processed", count, worker)
        result.records_per_s = (stat(url, "processed") - first) / (time.monotonic() - first_at)
        wait_for(url, "acknowledged", count, worker)
    finally:
        kill(worker)
    await check_gold(settings, count)
    result.kept = await restart(settings, hosts, count, log)
    shutil.rmtree(settings.data_dir / settings.app_id)
    result.lost = await restart(settings, hosts, count + hosts, log)
    print(
        f"{hosts:,} hosts: {result.records_per_s:,.0f} records/s, RSS "
        + ", ".join(f"{mb:.0f} MB at {mark:,}" for mark, mb in result.rss_mb.items())
        + f", restart {result.kept} kept / {result.lost} lost",
        flush=True,
    )
    return result


def table(results: list[Result]) -> str:
    marks = sorted({mark for r in results for mark in r.rss_mb})
    base = results[0].records_per_s
    head = (
        ["hosts", "records/s", f"x {results[0].hosts} hosts"]
        + [f"RSS MB at {m // 1000}k" for m in marks]
        + ["restart, state kept: serving / acknowledged (s)", "state lost (s)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"{r.hosts:,}", f"{r.records_per_s:,.0f}", f"{r.records_per_s / base:.2f}"]
        cells += [f"{r.rss_mb[m]:.0f}" if m in r.rss_mb else "" for m in marks]
        cells += [
            f"{r.kept.serving_s:.1f} / {r.kept.acknowledged_s:.1f}" if r.kept else "",
            f"{r.lost.serving_s:.1f} / {r.lost.acknowledged_s:.1f}" if r.lost else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, nargs="+", default=[100, 1_000, 10_000])
    args = parser.parse_args()

    with scratch_dir("hoststream-fleet-") as state:
        await benchmark(args, state)


async def benchmark(args: argparse.Namespace, state: Path) -> None:
    """Start the stack in ``state`` and run the benchmark against it."""
    settings = bench_settings(state, batch_max_records=5000)
    stack = Stack(settings)
    stack.install()
    stack.up(["kafka", "postgres"])
    try:
        results = [await run(settings, hosts, args.records, state) for hosts in args.hosts]
    finally:
        stack.down()
    print(f"\n{args.records:,} records per run, {settings.topic_partitions} partitions")
    print(table(results))


if __name__ == "__main__":
    asyncio.run(main())
