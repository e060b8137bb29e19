"""Every part of the code is packaged, type-checked and copied into the image."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = set(PROJECT["tool"]["setuptools"]["packages"])


def test_every_top_level_package_is_installed_and_type_checked():
    parts = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    assert parts == PACKAGES
    assert set(PROJECT["tool"]["mypy"]["packages"]) == PACKAGES


def test_the_image_copies_every_package():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    copied = {line.split()[1] for line in dockerfile if line.startswith("COPY ")}
    assert copied >= PACKAGES
