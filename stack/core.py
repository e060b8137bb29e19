"""The local stack as a whole: install, up, down, status over the four services."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from config import StackSettings
from stack import process
from stack.bigquery import BigQuery
from stack.errors import StackError
from stack.gcs import Gcs
from stack.kafka import Kafka, kafka_version
from stack.postgres import Postgres, find_bin_dir
from stack.service import Echo, Service

# pg_ctl start blocks until PostgreSQL is up, so it goes last: the JVM and the
# BigQuery emulator, the slow starters, boot meanwhile.
_LAUNCH_ORDER = ("kafka", "bigquery", "gcs", "postgres")


@dataclass(frozen=True)
class ServiceStatus:
    """What ``stack status`` shows for one service."""

    name: str
    up: bool
    address: str
    pid: int | None
    log: Path
    detail: str


class Stack:
    """Kafka, PostgreSQL, fake-gcs-server and bqemulator on 127.0.0.1, state in stack_dir."""

    SERVICES = ("kafka", "postgres", "gcs", "bigquery")

    def __init__(self, settings: StackSettings, echo: Echo = print) -> None:
        """``echo`` receives the progress lines (one per service); ``print`` by default."""
        self.settings = settings
        self.echo = echo
        self._kafka = Kafka(settings, echo)
        self._services: dict[str, Service] = {
            service.name: service
            for service in (
                self._kafka,
                Postgres(settings, echo),
                Gcs(settings, echo),
                BigQuery(settings, echo),
            )
        }

    def service(self, name: str) -> Service:
        """One service by name; StackError for an unknown name."""
        try:
            return self._services[name]
        except KeyError:
            raise StackError(
                f"unknown service {name!r}: choose from {', '.join(self.SERVICES)}"
            ) from None

    def install(self) -> None:
        """Check java, Maven and PostgreSQL and the emulators; fetch the Kafka jars if absent."""
        for name in self.SERVICES:
            self._services[name].install()
        self.echo(
            f"prerequisites ok: Kafka {kafka_version()} jars in {self._kafka.libs}, "
            f"PostgreSQL in {find_bin_dir()}, emulators importable"
        )

    def up(self, services: Sequence[str] = SERVICES) -> None:
        """Start the services not running yet, wait until each answers, then provision them.

        Idempotent: a running service is left alone (only its topics, role or bucket
        are re-checked). Raises StackError, with the log's last lines when a service
        fails to start.
        """
        selected = [self.service(name) for name in dict.fromkeys(services)]
        to_start = [s for s in selected if s.pid() is None]
        # Every check before any launch, so a taken port does not leave half a stack.
        for service in to_start:
            service.clear_stale()
            self._check_ports_free(service)
            service.install()
        started_at: dict[str, float] = {}
        for service in sorted(to_start, key=lambda s: _LAUNCH_ORDER.index(s.name)):
            service.prepare()
            started_at[service.name] = time.monotonic()
            service.launch()
        for service in selected:
            self._wait_ready(service)
            service.provision()
            if service.name in started_at:
                how = f"started in {time.monotonic() - started_at[service.name]:.1f} s"
            else:
                how = "already running"
            self.echo(f"{service.name:<9} up at {service.address} ({how})")

    def down(self) -> None:
        """Stop every service of this stack_dir; those not running are skipped."""
        services = list(self._services.values())
        # In parallel: Kafka's shutdown takes seconds and the others need not wait for it.
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            was_running = list(pool.map(lambda s: s.stop(), services))
        for service, running in zip(services, was_running, strict=True):
            self.echo(f"{service.name:<9} {'stopped' if running else 'was not running'}")

    def status(self) -> list[ServiceStatus]:
        """One entry per service: up means its process is alive and its port accepts."""
        return [self._status(self._services[name]) for name in self.SERVICES]

    def _status(self, service: Service) -> ServiceStatus:
        recorded = service.recorded_pid()
        pid = service.pid()
        port = service.ports[0].number
        listening = process.port_accepts(port)
        if pid is not None and listening:
            detail = "running"
        elif pid is not None:
            detail = f"process {pid} runs but port {port} refuses connections (starting or hung)"
        elif recorded is not None:
            detail = f"not running (stale pid file: process {recorded} is gone)"
        else:
            detail = "not running"
        if pid is None and listening:
            detail += f"; port {port} is taken by another process"
        return ServiceStatus(
            name=service.name,
            up=pid is not None and listening,
            address=service.address,
            pid=pid,
            log=service.log,
            detail=detail,
        )

    def _check_ports_free(self, service: Service) -> None:
        for port in service.ports:
            if not process.port_free(port.number):
                raise StackError(
                    f"{service.name}: port {port.number} on 127.0.0.1 is already taken by "
                    f"another process: stop it or set {port.env_var} to a free port"
                )

    def _wait_ready(self, service: Service) -> None:
        timeout = self.settings.stack_start_timeout_s
        deadline = time.monotonic() + timeout
        while not service.ready():
            if service.pid() is None:
                raise StackError(
                    f"{service.name} exited during start (log: {service.log})",
                    process.tail(service.log),
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"{service.name} not ready after {timeout:.0f} s (log: {service.log}); "
                    "`hoststream stack down` stops what did start",
                    process.tail(service.log),
                )
            time.sleep(0.2)
