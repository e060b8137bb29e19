"""BigQuery emulated by bqemulator (DuckDB underneath), run through stack.bigquery_main."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import stack
from config import LOOPBACK
from stack.errors import StackError
from stack.gcs import EMULATORS_HINT, gcs_root
from stack.service import Port, Service, http_status

# bqemulator imports numpy without declaring it, so check it too.
_REQUIRED_MODULES = ("bqemulator", "duckdb", "numpy")


class BigQuery(Service):
    """bqemulator's REST and gRPC servers, persistent under stack_dir."""

    name = "bigquery"
    marker = "stack.bigquery_main"

    @property
    def ports(self) -> tuple[Port, ...]:
        """REST port, then gRPC port."""
        return (
            Port(self.settings.stack_bigquery_port, "stack_bigquery_port"),
            Port(self.settings.stack_bigquery_grpc_port, "stack_bigquery_grpc_port"),
        )

    @property
    def address(self) -> str:
        """The REST endpoint (BIGQUERY_EMULATOR_HOST)."""
        return f"http://{LOOPBACK}:{self.ports[0].number}"

    def install(self) -> None:
        """Check that the emulator and its undeclared dependencies import."""
        missing = [m for m in _REQUIRED_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise StackError(f"{', '.join(missing)} missing: {EMULATORS_HINT}")

    def command(self) -> list[str]:
        """The wrapper entry point with bqemulator's ``start`` arguments."""
        rest, grpc = (str(p.number) for p in self.ports)
        return [
            sys.executable, "-m", "stack.bigquery_main", "start",
            "--rest-host", LOOPBACK, "--rest-port", rest,
            "--grpc-host", LOOPBACK, "--grpc-port", grpc,
            "--project", self.settings.gcp_project,
            "--data-dir", str(self.dir / "data"),
            "--log-level", "warning",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """Our environment plus what points bqemulator at the local lake."""
        package_root = str(Path(stack.__file__).resolve().parent.parent)
        python_path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
        return {
            **os.environ,
            # `-m stack.bigquery_main` must import even when hoststream is not installed.
            "PYTHONPATH": python_path,
            # Skips a best-effort avro extension download that stalls offline.
            "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
            # gs://bucket/path loads read fake-gcs-server's files directly.
            "BQEMU_GCS_LOCAL_ROOT": str(gcs_root(self.settings)),
        }

    def ready(self) -> bool:
        """Whether listing the project's datasets answers 200."""
        url = f"{self.address}/bigquery/v2/projects/{self.settings.gcp_project}/datasets"
        return http_status("GET", url) == 200

    def provision(self) -> None:
        """Nothing: datasets and tables are the warehouse sink's to create."""
