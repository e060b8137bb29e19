"""pytest plugin: one real local stack per test session, on free loopback ports.

Listed in ``pytest_plugins`` of tests/conftest.py. The stack lives in a temporary
stack_dir, so it never touches (or collides with) a developer's own stack on the
default ports; the Kafka jars are shared with the repository's so they are
fetched at most once.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import AllSettings
from stack import Stack
from stack.throwaway import free_ports, throwaway_settings

REPO = Path(__file__).resolve().parents[1]
KAFKA_LIBS = REPO / ".hoststream" / "kafka-libs"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def stack_test_settings(stack_dir: Path) -> AllSettings:
    """Settings for a test stack in ``stack_dir`` on fresh free ports, sharing the jars."""
    return throwaway_settings(stack_dir, KAFKA_LIBS)


@pytest.fixture(scope="session")
def stack_settings(request: pytest.FixtureRequest) -> Iterator[AllSettings]:
    """Settings of a running local stack (all four services), stopped after the session.

    The stack lives in its own folder under the system temp dir, not under pytest's
    basetemp: as root, PostgreSQL runs as the ``postgres`` user and needs o+x on
    every parent, and each pytest session starting beside this one resets
    /tmp/pytest-of-root to 0700, which broke initdb midway. Kept after a failed
    session for its logs.
    """
    stack_dir = Path(tempfile.mkdtemp(prefix="hoststream-test-stack-"))
    settings = stack_test_settings(stack_dir)
    stack = Stack(settings)
    try:
        stack.install()
        stack.up()
        yield settings
    finally:
        # Also after a failed up(): whatever did start must not outlive the session.
        stack.down()
        if request.session.testsfailed:
            print(f"local stack state and logs kept in {stack_dir}")
        else:
            shutil.rmtree(stack_dir, ignore_errors=True)
