"""A broker outage of ten minutes at a 1 s interval, for real: nothing lost, nothing twice.

Not a test: it runs for the length of the outage and prints figures. It starts a
Kafka broker of its own (free ports, a temporary directory), runs
`hoststream collect --count N` at the interval, stops the broker for the outage,
starts it again, and once the collector has exited (every sample acknowledged)
reads the topic back and checks that each sample arrived exactly once, in order,
with no gap in the interval grid and none dropped by the spool. Exit status 1
when a check fails.

    .venv/bin/python scripts/outage_check.py [--outage 600] [--interval 1]

Figures: samples and their size, the spool's peak while Kafka is away (and how
long the default spool_max_bytes would last at this interval), the collector's
memory and CPU through the outage, and how long the spool took to drain once the
broker was back.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.spool import spool_directory, spooled  # noqa: E402
from config import AllSettings, CollectorSettings  # noqa: E402
from schemas.metrics import utc_timestamp  # noqa: E402
from stack import Stack  # noqa: E402
from stack.throwaway import throwaway_settings  # noqa: E402

HOST = "outage-check"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class Collector:
    """`hoststream collect` as a child process, watched through /proc and its spool."""

    def __init__(self, settings: AllSettings, count: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTSTREAM_")}
        self.log = log
        self.spool = spool_directory(settings.collector_dir, settings.topic, settings.host_id)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "collect", "--count", str(count)],
                cwd=REPO,
                env=env | settings.as_environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS_PER_S

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def waiting(self) -> list[bytes]:
        return spooled(self.spool) if self.spool.exists() else []


def wait_for(condition: object, what: str, timeout_s: float, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


async def read_back(settings: AllSettings) -> list[dict[str, Any]]:
    """Every record of the topic, partition by partition in offset order, decoded."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        # The stack created the topic with these partitions.
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: dict[TopicPartition, list[dict[str, Any]]] = {tp: [] for tp in partitions}
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                records[tp] += [orjson.loads(m.value) for m in batch if m.value is not None]
        return [record for tp in partitions for record in records[tp]]
    finally:
        await consumer.stop()


def status(record: dict[str, Any], figure: str) -> int:
    """One figure of the collector's own state reported with a sample."""
    return int(record.get("collector", {}).get(figure, 0))


def check(records: list[dict[str, Any]], count: int, interval_s: float) -> list[str]:
    """What is wrong with the records read back; empty when nothing is."""
    problems = []
    ids = [record["event_id"] for record in records]
    if len(ids) != count:
        problems.append(f"{len(ids)} records for {count} samples taken")
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicate event_ids")
    hosts = {record["host_id"] for record in records}
    if hosts != {HOST}:
        problems.append(f"records of hosts {sorted(map(str, hosts))}")
    times = [datetime.fromisoformat(str(record["timestamp"])) for record in records]
    backwards = sum(later <= earlier for earlier, later in itertools.pairwise(times))
    if backwards:
        problems.append(f"{backwards} records out of order")
    # One sample per tick of the grid: a gap over 1.5 intervals is a sample missing.
    gaps = [
        (earlier, later)
        for earlier, later in itertools.pairwise(times)
        if (later - earlier).total_seconds() > 1.5 * interval_s
    ]
    if gaps:
        problems.append(f"{len(gaps)} gaps in the grid, the first after {gaps[0][0]}")
    dropped = max((status(record, "dropped_samples") for record in records), default=0)
    if dropped:
        problems.append(f"the spool dropped {dropped} samples")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--outage", type=float, default=600.0, help="seconds Kafka is away")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--before", type=float, default=30.0, help="seconds before the outage")
    parser.add_argument("--after", type=float, default=60.0, help="seconds of sampling after it")
    args = parser.parse_args()

    count = round((args.before + args.outage + args.after) / args.interval)
    work = Path(tempfile.mkdtemp(prefix="hoststream-outage-"))
    settings = throwaway_settings(
        work / "stack",
        REPO / ".hoststream" / "kafka-libs",
        host_id=HOST,
        interval_s=args.interval,
        collector_dir=work / "collector",
    )
    stack = Stack(settings, echo=lambda line: None)
    collector = None
    try:
        print(f"starting a Kafka broker on {settings.kafka_bootstrap} ...", flush=True)
        stack.up(["kafka"])
        collector = Collector(settings, count, work / "collector.log")
        wait_for(lambda: "sampling" in collector.output(), "the collector to start", 60)
        print(
            f"collecting {count} samples at {args.interval:g} s; Kafka goes away in "
            f"{args.before:g} s for {args.outage:g} s",
            flush=True,
        )
        time.sleep(args.before)
        stack.service("kafka").stop()
        stopped_at = time.monotonic()
        cpu_at_stop = collector.cpu_s()
        print(f"Kafka stopped at {utc_timestamp(datetime.now(UTC))}", flush=True)
        spool_peak_bytes = spool_peak_samples = 0
        rss = []
        while time.monotonic() - stopped_at < args.outage:
            waiting = collector.waiting()
            spool_peak_samples = max(spool_peak_samples, len(waiting))
            spool_peak_bytes = max(spool_peak_bytes, sum(map(len, waiting)))
            rss.append(collector.rss_mb())
            time.sleep(min(2.0, max(0.0, args.outage - (time.monotonic() - stopped_at))))
        outage_cpu_s = collector.cpu_s() - cpu_at_stop
        outage_s = time.monotonic() - stopped_at
        # Drain time counts from the restart: the collector may well have sent its spool
        # before the stack's own readiness check is through.
        restarted_at = time.monotonic()
        back_stamp = utc_timestamp(datetime.now(UTC))
        stack.up(["kafka"])
        print(
            f"Kafka restarted at {back_stamp} after {outage_s:.0f} s away, answering "
            f"{time.monotonic() - restarted_at:.1f} s later",
            flush=True,
        )

        def backlog_sent() -> bool:
            return all(orjson.loads(p)["timestamp"] >= back_stamp for p in collector.waiting())

        wait_for(backlog_sent, "the spool to drain", 600, poll_s=0.2)
        drain_s = time.monotonic() - restarted_at
        peak_rss = collector.rss_mb("VmHWM")
        returncode = collector.process.wait(timeout=args.after + 120)
        output = collector.output()
        records = asyncio.run(read_back(settings))
        problems = check(records, count, args.interval)
        if returncode != 0:
            problems.append(f"the collector exited with {returncode}")
        went, returned = (
            output.count("stopped acknowledging samples"),
            output.count("acknowledges samples again"),
        )
        if (went, returned) != (1, 1):
            problems.append(f"{went} 'went away' and {returned} 'back' log lines, not 1 and 1")
        if "Traceback" in output:
            problems.append("a traceback in the collector's log")

        sample_bytes = sum(len(orjson.dumps(r)) for r in records) / max(1, len(records))
        max_bytes = CollectorSettings.model_fields["spool_max_bytes"].default
        holds_s = max_bytes / sample_bytes * args.interval
        distinct = len({record["event_id"] for record in records})
        print(f"\nsamples taken {count}, read back {len(records)}, distinct {distinct}")
        print(f"sample size {sample_bytes:.0f} B (JSON, uncompressed)")
        print(
            f"spool peak during the outage {spool_peak_samples} samples, "
            f"{spool_peak_bytes / 1e6:.2f} MB"
        )
        print(
            f"default spool_max_bytes {max_bytes / 1e6:g} MB holds {holds_s / 3600:.1f} h "
            f"at {args.interval:g} s ({holds_s / max(outage_s, 1):.0f} x this outage)"
        )
        cpu_ms = outage_cpu_s / (outage_s / args.interval) * 1000
        print(
            f"collector while Kafka was away: CPU {cpu_ms:.2f} ms per sample, RSS "
            f"{min(rss, default=0):.1f}-{max(rss, default=0):.1f} MB (peak {peak_rss:.1f} MB)"
        )
        print(f"every sample taken before the restart sent {drain_s:.1f} s after it")
        print("collector log:\n  " + "\n  ".join(output.strip().splitlines()))
        if problems:
            print("\nFAILED:\n  " + "\n  ".join(problems))
            sys.exit(1)
        print("\nOK: every sample arrived exactly once, in order, no gap in the grid, none dropped")
    finally:
        if collector and collector.process.poll() is None:
            collector.process.terminate()
            collector.process.wait(timeout=30)
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
