"""Starts and stops fake-gcs-server and bqemulator for tests/dags.

Run with the main virtualenv's Python (``.venv/bin/python -m tests.dags.emulators``):
the emulators come with hoststream's ``stack`` extra in .venv, which .venv-airflow
does not carry (Airflow's pins are kept away from the rest). Only these two services
of the local stack start, on free loopback ports, with their state in DIR.

    python -m tests.dags.emulators up DIR     prints the endpoints as one JSON line
    python -m tests.dags.emulators down DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from stack import Stack
from stack.gcs import gcs_root
from stack.throwaway import throwaway_settings

SERVICES = ("gcs", "bigquery")


def main(action: str, stack_dir: Path) -> None:
    """``up``: start both emulators and print their endpoints; ``down``: stop them."""
    # Kafka is not started, so its jars are never fetched: any folder does.
    settings = throwaway_settings(stack_dir, stack_dir / "kafka-libs")
    stack = Stack(settings, echo=lambda line: print(line, file=sys.stderr))
    if action == "down":
        stack.down()
        return
    stack.up(SERVICES)
    endpoints = {
        "project": settings.gcp_project,
        "bucket": settings.gcs_bucket,
        "gcs": settings.gcs_emulator_host,
        "bigquery": settings.bigquery_emulator_host,
        "gcs_root": str(gcs_root(settings)),
    }
    print(orjson.dumps(endpoints).decode())


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
