"""PostgreSQL from the Debian ``postgresql`` package, one throwaway cluster under stack_dir."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path

import asyncpg

from config import LOOPBACK, local_postgres_dsn
from stack import process
from stack.errors import StackError
from stack.service import STOP_TIMEOUT_S, Port, Service

PG_HINT = "apt-get install -y postgresql"
ROLE = "hoststream"
DATABASE = "hoststream"
# Debian/Ubuntu packages put each major version's server binaries in <root>/<major>/bin.
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
# sun_path holds 108 bytes; a longer socket path makes the server refuse to start.
_MAX_SOCKET_PATH = 100


def find_bin_dir() -> Path:
    """The newest PostgreSQL server bin dir (with initdb and pg_ctl), else StackError."""
    candidates = sorted(_DEBIAN_ROOT.glob("*/bin"), key=_major, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise StackError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: `{PG_HINT}`")


def _major(bin_dir: Path) -> int:
    version = bin_dir.parent.name
    return int(version) if version.isdigit() else -1


class Postgres(Service):
    """A cluster run through pg_ctl, as the ``postgres`` system user when we are root."""

    name = "postgres"
    marker = "postgres"

    @property
    def ports(self) -> tuple[Port, ...]:
        """The server's TCP port."""
        return (Port(self.settings.stack_postgres_port, "stack_postgres_port"),)

    @property
    def address(self) -> str:
        """The DSN hoststream uses for the local database."""
        return local_postgres_dsn(self.ports[0].number)

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.dir / "data"

    @property
    def pid_file(self) -> Path:
        """postmaster.pid, which the server itself keeps (its first line is the pid)."""
        return self.data / "postmaster.pid"

    def clear_stale(self) -> None:
        """Nothing to do: the server replaces its own stale postmaster.pid."""

    @property
    def _sockets(self) -> Path:
        return self.dir / "run"

    def _as_owner(self, command: list[str]) -> list[str]:
        # initdb and the server refuse to run as root.
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = self._as_owner([str(find_bin_dir() / tool), *args])
        # A session of its own, so the server pg_ctl forks outlives a Ctrl-C of `stack up`.
        return subprocess.run(
            command,
            cwd=self.dir,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        )

    def install(self) -> None:
        """Check the server binaries, and the ``postgres`` user and runuser when root."""
        find_bin_dir()
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                f"running as root needs the `postgres` system user to run PostgreSQL: `{PG_HINT}`"
            ) from None
        if shutil.which("runuser") is None:
            raise StackError("runuser not found: `apt-get install -y util-linux`")

    def prepare(self) -> None:
        """Create the cluster once (initdb), owned by whoever runs the server."""
        super().prepare()
        self._sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            process.chown_tree(self.dir, owner.pw_uid, owner.pw_gid)
            for parent in process.make_traversable(self.dir):
                self.echo(f"note: made {parent} traversable (o+x) for the postgres user")
        if (self.data / "PG_VERSION").exists():
            return
        result = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-locale",
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(
                f"initdb failed for {self.data}", (result.stdout + result.stderr).strip()
            )

    def launch(self) -> None:
        """pg_ctl start; it returns once the server accepts connections."""
        port = self.ports[0].number
        sockets = str(self._sockets)
        if len(f"{sockets}/.s.PGSQL.{port}") > _MAX_SOCKET_PATH:
            sockets = ""  # TCP only: hoststream never uses the socket
        options = f"-c listen_addresses={LOOPBACK} -p {port} -k {shlex.quote(sockets)}"
        timeout = str(int(self.settings.stack_start_timeout_s))
        result = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t",
            timeout, "start",
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL did not start (log: {self.log})",
                (result.stdout + result.stderr).strip() + "\n" + process.tail(self.log),
            )

    def stop(self) -> bool:
        """pg_ctl stop -m fast: disconnect clients, shut down cleanly."""
        if self.pid() is None:
            return False
        result = self._run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S)),
            "stop",
        )  # fmt: skip
        if result.returncode != 0 and self.pid() is not None:
            raise StackError(f"pg_ctl stop failed: {result.stderr.strip() or result.stdout}")
        return True

    def ready(self) -> bool:
        """Whether the server answers ``select 1``."""
        try:
            return process.run_async(self._select_one)
        except Exception:  # any failure just means "not yet"
            return False

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=LOOPBACK,
            port=self.ports[0].number,
            user="postgres",
            database="postgres",
            timeout=2,
        )

    async def _select_one(self) -> bool:
        conn = await self._connect()
        try:
            return bool(await conn.fetchval("select 1") == 1)
        finally:
            await conn.close()

    def provision(self) -> None:
        """Create role and database ``hoststream`` when missing."""
        process.run_async(self._create_role_and_database)

    async def _create_role_and_database(self) -> None:
        conn = await self._connect()
        try:
            if not await conn.fetchval("select 1 from pg_roles where rolname = $1", ROLE):
                await conn.execute(f'create role "{ROLE}" login superuser')
            if not await conn.fetchval("select 1 from pg_database where datname = $1", DATABASE):
                # CREATE DATABASE cannot run in a transaction or take parameters.
                await conn.execute(f'create database "{DATABASE}" owner "{ROLE}"')
        finally:
            await conn.close()
