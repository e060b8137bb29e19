"""What every local stack service has in common; each service module fills in the rest."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from config import LOOPBACK, StackSettings
from stack import process

Echo = Callable[[str], None]

# Kafka's controlled shutdown of a single node takes a few seconds; beyond this
# something is stuck and SIGKILL is the only way out.
STOP_TIMEOUT_S = 20.0

# urllib honours http_proxy; a proxy must never see (or break) loopback calls.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Port:
    """A port a service binds, with the setting that chooses it."""

    number: int
    setting: str

    @property
    def env_var(self) -> str:
        """The environment variable a user sets to move this port."""
        return f"HOSTSTREAM_{self.setting.upper()}"


class Service(ABC):
    """One process of the stack, with its state in ``<stack_dir>/<name>/``.

    The defaults run the service as a detached child with a pid file; PostgreSQL
    overrides launch, stop and pid lookup because pg_ctl manages its own.
    """

    name: ClassVar[str]
    # Substring of the process's command line: tells our process from an unrelated
    # one that inherited a stale pid.
    marker: ClassVar[str]

    def __init__(self, settings: StackSettings, echo: Echo) -> None:
        self.settings = settings
        self.echo = echo
        self.dir = settings.stack_dir.resolve() / self.name

    @property
    @abstractmethod
    def ports(self) -> tuple[Port, ...]:
        """Ports the service binds; the first one is where it is reached."""

    @property
    def address(self) -> str:
        """Where a client reaches the service."""
        return f"{LOOPBACK}:{self.ports[0].number}"

    @property
    def log(self) -> Path:
        """The service's log file."""
        return self.dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        """Where the running process's pid is recorded."""
        return self.dir / f"{self.name}.pid"

    @abstractmethod
    def install(self) -> None:
        """Check (and fetch where possible) what the service needs; StackError otherwise."""

    def prepare(self) -> None:
        """Create the state directory and configuration before a launch."""
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """The command line of the detached process."""
        raise NotImplementedError(f"{type(self).__name__} must define command() or launch()")

    def env(self) -> dict[str, str] | None:
        """Environment of the detached process; None inherits ours."""
        return None

    def launch(self) -> None:
        """Start the service without waiting for it to be ready."""
        process.spawn(self.command(), log=self.log, pid_file=self.pid_file, env=self.env())

    def recorded_pid(self) -> int | None:
        """The pid in the pid file, alive or not."""
        return process.read_pid(self.pid_file)

    def pid(self) -> int | None:
        """The pid of the running service, or None when it is not running."""
        pid = self.recorded_pid()
        return pid if pid is not None and process.pid_alive(pid, self.marker) else None

    def clear_stale(self) -> None:
        """Forget a pid file left by a process that is gone."""
        self.pid_file.unlink(missing_ok=True)

    @abstractmethod
    def ready(self) -> bool:
        """Whether the service answers a real request (an open port is not enough)."""

    @abstractmethod
    def provision(self) -> None:
        """Create what hoststream expects to exist (topics, roles, buckets); idempotent."""

    def stop(self) -> bool:
        """Stop the service; return whether it was running."""
        pid = self.pid()
        if pid is not None:
            process.terminate(pid, self.marker, STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None


def http_status(method: str, url: str, body: Any = None, timeout_s: float = 2.0) -> int:
    """HTTP status of a JSON request to a loopback emulator; 0 when it cannot connect."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _http.open(request, timeout=timeout_s) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0
