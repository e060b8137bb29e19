"""How long the warehouse takes to load one event hour of a fleet from the lake into the
BigQuery emulator (prints figures; not a test).

It writes one hour of synthetic samples (``--hosts`` hosts every ``--interval-s``
seconds: 1,000 hosts at 10 s is 360,000 samples) to the lake as the worker cuts it
(4 partitions, objects of at most 10,000 records), then runs ``load_hour`` and
``aggregate_hour`` twice (a first load, then a reload of the same hour) and prints each
step's seconds. It starts its own fake-gcs-server and bqemulator (the local stack, in a
temporary directory on free loopback ports) and stops them at the end.

    .venv/bin/python scripts/bench_warehouse.py --hosts 1000 --interval-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shutil
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.synthetic import synthetic_document  # noqa: E402
from schemas.lake import LakeObject, OpenObject, archived, hour_number  # noqa: E402
from sinks.gcs import GcsBucket  # noqa: E402
from stack import Stack  # noqa: E402
from stack.throwaway import throwaway_settings  # noqa: E402
from warehouse.aggregate import aggregate_hour  # noqa: E402
from warehouse.load import PlainRecord, ensure_tables, load_hour  # noqa: E402
from warehouse.target import HOURLY_TABLE, RAW_TABLE, Warehouse, bigquery_client  # noqa: E402

HOUR = datetime(2026, 11, 22, 13, tzinfo=UTC)
PARTITIONS = 4
MAX_RECORDS = 10_000
TOPIC = "machine_metrics"


def lake_objects(hosts: int, interval_s: int) -> list[LakeObject]:
    """The hour's samples, in time order, cut per partition as the lake agent cuts them."""
    rng = random.Random(18)
    names = [f"host-{n:05d}" for n in range(hosts)]
    runs: dict[int, OpenObject] = {}
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    done: list[LakeObject] = []
    arrived_ms = int(time.time() * 1000)
    for step in range(3600 // interval_s):
        for n, host in enumerate(names):
            moment = HOUR + timedelta(seconds=step * interval_s + n * interval_s / hosts)
            document = synthetic_document(host, moment, rng, interval_s=interval_s)
            partition = zlib.crc32(host.encode()) % PARTITIONS
            offset = offsets[partition]
            offsets[partition] += 1
            record = PlainRecord(
                TOPIC, partition, offset, host.encode(), orjson.dumps(document), arrived_ms
            )
            _, line = archived(record)
            run = runs.get(partition)
            if run is None or len(run.lines) == MAX_RECORDS:
                if run is not None:
                    done.append(LakeObject.of(TOPIC, run, gzipped=False))
                run = runs[partition] = OpenObject(partition, hour_number(HOUR), offset, 0.0)
            run.add(offset, line)
    done += [LakeObject.of(TOPIC, run, gzipped=False) for run in runs.values()]
    return done


async def upload(bucket: GcsBucket, objects: list[LakeObject]) -> None:
    try:
        await bucket.write(objects)
    finally:
        await bucket.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--interval-s", type=int, default=10)
    args = parser.parse_args()

    stack_dir = Path(tempfile.mkdtemp(prefix="hoststream-bench-warehouse-"))
    settings = throwaway_settings(stack_dir, REPO / ".hoststream" / "kafka-libs")
    stack = Stack(settings)
    try:
        stack.up(["gcs", "bigquery"])
        started = time.monotonic()
        objects = lake_objects(args.hosts, args.interval_s)
        records = sum(o.records for o in objects)
        megabytes = sum(len(o.data) for o in objects) / 1e6
        made_s = time.monotonic() - started
        started = time.monotonic()
        asyncio.run(upload(GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host), objects))
        print(
            f"lake: {records:,} samples of {args.hosts:,} hosts every {args.interval_s} s, "
            f"{len(objects)} objects, {megabytes:,.0f} MB (made in {made_s:.1f} s, "
            f"uploaded in {time.monotonic() - started:.1f} s)"
        )
        del objects

        wh = Warehouse(settings.gcp_project, "bench", settings.gcs_bucket, TOPIC)
        client = bigquery_client(wh, settings.bigquery_emulator_host)
        ensure_tables(client, wh)
        for run in ("first load", "reload"):
            bucket = GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host)
            report = load_hour(client, bucket, wh, HOUR)
            started = time.monotonic()
            aggregate_hour(client, wh, HOUR)
            aggregate_s = time.monotonic() - started
            steps = ", ".join(f"{step} {s:.1f} s" for step, s in report.step_seconds.items())
            print(
                f"{run}: load_hour {report.seconds:.1f} s ({steps}; {report.clean.rows:,} rows, "
                f"{report.clean.rows / report.seconds:,.0f} rows/s), aggregate_hour "
                f"{aggregate_s:.1f} s ({report.clean.hosts:,} hosts); "
                f"total {report.seconds + aggregate_s:.1f} s"
            )
        check = (
            f"SELECT (SELECT COUNT(*) FROM `{wh.table(RAW_TABLE)}`) AS raw_rows, "
            f"(SELECT COUNT(*) FROM `{wh.table(HOURLY_TABLE)}`) AS hourly_rows, "
            f"(SELECT SUM(sample_count) FROM `{wh.table(HOURLY_TABLE)}`) AS samples"
        )
        (row,) = client.query(check).result()
        print(
            f"BigQuery holds {row['raw_rows']:,} raw rows and {row['hourly_rows']:,} hourly "
            f"rows counting {row['samples']:,} samples"
        )
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process (generation included): {peak_mb:,.0f} MB")
    finally:
        stack.down()
        shutil.rmtree(stack_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
