"""The collector's own process: ``python -m collector --handover-fd N``.

``hoststream collect`` reads and checks the settings (pydantic-settings, through
typer), then replaces itself with this process (``os.execv``: the same pid, a
fresh memory image), handing over the settings it checked as JSON in an unlinked
temporary file whose descriptor the new process inherits. The process that
samples for months thus never holds those libraries and the command's own
modules: 14 MB of memory. Not on the command line: any user of the host can read
that, and it is limited to 128 kB per argument (long tags would not fit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn, TypedDict

import orjson

from collector.gpu import NvidiaGpus
from collector.publisher import BrokerUnreachable, HttpPublisher, Publisher, Sender
from collector.run import collect
from collector.sampler import Sampler
from collector.schedule import next_tick
from collector.spool import Spool, SpoolLocked, spool_directory
from schemas.metrics import to_json

log = logging.getLogger("hoststream.collect")


class Handover(TypedDict):
    """What ``hoststream collect`` hands this process: its settings, checked
    (:class:`config.collector.CollectorSettings`), and its command-line options."""

    bootstrap_servers: list[str]
    topic: str
    ingest_url: str
    """Send to this worker's HTTP ingest instead of Kafka; empty: to Kafka."""
    ingest_token: str
    host_id: str
    interval_s: float
    tags: list[tuple[str, str]]
    collector_dir: str
    spool_max_bytes: int
    count: int | None
    """Samples to take (then stop once Kafka has them all); ``None``: until stopped."""
    print_samples: bool
    """Print samples as JSON instead of sending them."""


HANDOVER_OPTION = "--handover-fd"


def exec_collector(handover: Handover) -> NoReturn:
    """Replace this process with the collector's own, running as ``handover`` says."""
    # Imported here: the collector's own process, which imports this module too, would
    # hold 0.7 MB more for a module only the process it replaces uses.
    import tempfile

    with tempfile.TemporaryFile() as file:
        file.write(orjson.dumps(handover))
        file.seek(0)
        os.set_inheritable(file.fileno(), True)
        # -P: the current directory must not shadow the installed collector package.
        args = [sys.executable, "-P", "-m", "collector", HANDOVER_OPTION, str(file.fileno())]
        os.execv(args[0], args)


def main(argv: list[str]) -> int:
    """Run the collector as the handover named by ``argv`` says; the exit status."""
    if len(argv) != 3 or argv[1] != HANDOVER_OPTION or not argv[2].isdigit():
        sys.stderr.write("hoststream: the collector's process is started by `hoststream collect`\n")
        return 2
    with os.fdopen(int(argv[2]), "rb") as file:
        handover: Handover = orjson.loads(file.read())
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sampler = Sampler(
        handover["host_id"], handover["interval_s"], handover["tags"], gpus=NvidiaGpus.open()
    )
    if handover["print_samples"]:
        for taken in range(handover["count"] or 1):
            if taken:
                time.sleep(max(0.0, next_tick(time.time(), sampler.interval_s) - time.time()))
            sys.stdout.write(to_json(sampler.sample(), indent=True).decode() + "\n")
            sys.stdout.flush()
        return 0
    try:
        # asyncio's own loop: uvloop took no CPU off a sample here, and cost 2 MB.
        asyncio.run(_publish(handover, sampler))
    except (BrokerUnreachable, SpoolLocked) as exc:
        # One line, as the hoststream command prints its other errors.
        sys.stderr.write(f"hoststream: {exc}\n")
        return 1
    return 0


async def _publish(handover: Handover, sampler: Sampler) -> None:
    # aiokafka logs every failed reconnect; the collector says it once (collector/run.py).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    spool = Spool(
        spool_directory(Path(handover["collector_dir"]), handover["topic"], handover["host_id"]),
        handover["spool_max_bytes"],
    )
    try:
        publisher: Sender = (
            HttpPublisher(handover["ingest_url"], handover["ingest_token"])
            if handover["ingest_url"]
            else Publisher(handover["bootstrap_servers"], handover["topic"])
        )
        await publisher.start()
        log.info(
            "sampling %s (host id %s) every %.3g s into %s through %s",
            sampler.hostname,
            handover["host_id"],
            sampler.interval_s,
            handover["topic"],
            publisher.where,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await collect(sampler, publisher, spool, handover["count"], stop)
        finally:
            await publisher.stop()
    finally:
        spool.close()
        sampler.close()
