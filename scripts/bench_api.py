"""Benchmark of the lookup API (prints a table; not a test).

Loads a day of 1,000 hosts (a sample every 5 minutes: each host then has as many
gold rows as at any rate, 288 five-minute windows and 24 hour windows), processed by
a worker; a second worker then joins the group and takes half the partitions. It
then asks ``GET /api/hosts/{host}/windows/5m`` for a whole day of one host:

- locally: of the worker that owns the host;
- routed: of the other worker, which passes the request on to the owner.

For each: requests/s and p50/p99 latency of one client asking in turn, then
requests/s of 16 clients at once. Client and workers share this machine.

It starts its own Kafka and PostgreSQL (the local stack, in a temporary directory on
free loopback ports) and stops them at the end.

    .venv/bin/python scripts/bench_api.py --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from bench_fleet import start_worker, stat, wait_for
from bench_worker import bench_settings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.preflight import ensure_topics  # noqa: E402
from collector.synthetic import synthetic_document  # noqa: E402
from config import AllSettings  # noqa: E402
from stack import Stack  # noqa: E402
from stack.throwaway import free_ports, scratch_dir  # noqa: E402

HOSTS = 1_000
INTERVAL_S = 300
DAY_S = 86_400
CONCURRENT_CLIENTS = 16


@dataclass
class Figures:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    concurrent_requests_per_s: float


async def produce(settings: AllSettings, end: datetime) -> int:
    """A day of HOSTS hosts, one sample every INTERVAL_S, the newest at ``end``."""
    rng = random.Random(7)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20)
    await producer.start()
    count = 0
    try:
        for step in range(DAY_S // INTERVAL_S, -1, -1):
            moment = end - timedelta(seconds=step * INTERVAL_S)
            for h in range(HOSTS):
                host = f"host-{h:04d}"
                document = synthetic_document(host, moment, rng, interval_s=INTERVAL_S)
                await producer.send(settings.topic, orjson.dumps(document), key=host.encode())
                count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def owner_of(session: aiohttp.ClientSession, url: str, host: str) -> str | None:
    """The worker that served ``host``'s latest sample asked of ``url``; None while
    ``url`` does not answer yet, or cannot route yet."""
    try:
        async with session.get(f"{url}/api/hosts/{host}/latest") as response:
            if response.status != 200:
                return None
            served_by: str = (await response.json())["served_by"]
            return served_by
    except aiohttp.ClientError:
        return None


async def measure(session: aiohttp.ClientSession, url: str, count: int) -> Figures:
    """Latency of ``count`` requests in turn, then the rate of CONCURRENT_CLIENTS."""

    async def one() -> float:
        started = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise SystemExit(f"{url}: {response.status} {body[:300]!r}")
        return time.perf_counter() - started

    for _ in range(100):  # connections, caches and the owner's route warmed up
        await one()
    took = sorted([await one() for _ in range(count)])

    async def client() -> None:
        for _ in range(count // CONCURRENT_CLIENTS):
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENT_CLIENTS)))
    concurrent_s = time.perf_counter() - started
    return Figures(
        requests_per_s=count / sum(took),
        p50_ms=took[len(took) // 2] * 1000,
        p99_ms=took[int(len(took) * 0.99)] * 1000,
        concurrent_requests_per_s=(count // CONCURRENT_CLIENTS * CONCURRENT_CLIENTS) / concurrent_s,
    )


async def run(settings: AllSettings, state: Path, count: int) -> dict[str, Figures]:
    ports = free_ports(2)
    first = settings.model_copy(update={"web_port": ports[0], "data_dir": state / "first"})
    second = settings.model_copy(update={"web_port": ports[1], "data_dir": state / "second"})
    urls = [f"http://127.0.0.1:{s.web_port}" for s in (first, second)]
    await ensure_topics(first)
    end = datetime.now(UTC)
    produced = await produce(first, end)
    print(f"produced {produced:,} samples of {HOSTS:,} hosts over a day")
    workers = [start_worker(first, state / "first.log")]
    try:
        wait_for(f"{urls[0]}/stats/", "acknowledged", produced, workers[0])
        print("the first worker processed them; a second joins")
        workers.append(start_worker(second, state / "second.log"))
        async with aiohttp.ClientSession() as session:
            hosts = [f"host-{h:04d}" for h in range(HOSTS)]
            deadline = time.monotonic() + 180
            while True:
                owners = {await owner_of(session, urls[1], host) for host in hosts[:40]}
                if owners == set(urls) and stat(f"{urls[1]}/ready", "ready"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the workers did not share the hosts: {owners}")
                await asyncio.sleep(1)
            await asyncio.sleep(5)  # the second worker's recovery settled
            host = hosts[0]
            while await owner_of(session, urls[0], host) != urls[0]:
                host = hosts[hosts.index(host) + 1]
            since, to = end - timedelta(days=1), end + timedelta(seconds=1)
            query = f"from={since:%Y-%m-%dT%H:%M:%SZ}&to={to:%Y-%m-%dT%H:%M:%SZ}"
            path = f"/api/hosts/{host}/windows/5m?{query}"
            async with session.get(f"{urls[0]}{path}") as response:
                windows = len((await response.json())["windows"])
            print(f"{host}: {windows} five-minute windows in the day asked")
            return {
                "local (the owner)": await measure(session, f"{urls[0]}{path}", count),
                "routed (the other worker)": await measure(session, f"{urls[1]}{path}", count),
            }
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)


def table(results: dict[str, Figures]) -> str:
    lines = [
        "| windows/5m, a day of one host | requests/s (1 client) | p50 ms | p99 ms "
        f"| requests/s ({CONCURRENT_CLIENTS} clients) |",
        "|---|---|---|---|---|",
    ]
    for name, f in results.items():
        lines.append(
            f"| {name} | {f.requests_per_s:,.0f} | {f.p50_ms:.1f} | {f.p99_ms:.1f} "
            f"| {f.concurrent_requests_per_s:,.0f} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    with scratch_dir("hoststream-api-") as state:
        await benchmark(args, state)


async def benchmark(args: argparse.Namespace, state: Path) -> None:
    """Start the stack in ``state`` and run the benchmark against it."""
    settings = bench_settings(state, batch_max_records=5000).model_copy(
        update={"lake_enabled": False}
    )
    stack = Stack(settings)
    stack.install()
    stack.up(["kafka", "postgres"])
    try:
        results = await run(settings, state, args.requests)
    except subprocess.SubprocessError as exc:
        raise SystemExit(f"a worker did not stop: {exc}") from None
    finally:
        stack.down()
    print(table(results))


if __name__ == "__main__":
    asyncio.run(main())
