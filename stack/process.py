"""Process plumbing shared by every stack service: spawn, pid files, liveness, ports, stop.

Linux only, like the bundled fake-gcs-server binary: liveness reads ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from config import LOOPBACK

T = TypeVar("T")

# Popen objects of the services this interpreter started. Holding them lets
# ``pid_alive`` reap a child that exited (a zombie would otherwise look alive)
# and keeps Python from warning that a subprocess is "still running" at exit.
_children: dict[int, subprocess.Popen[bytes]] = {}

# /proc/<pid>/stat flag of kernel threads: a stale pid reused by one is not ours.
_PF_KTHREAD = 0x00200000


def spawn(
    command: Sequence[str],
    *,
    log: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``command`` detached, output appended to ``log``, pid written to ``pid_file``.

    The process gets its own session so that Ctrl-C in the terminal that ran
    ``stack up`` does not take the services down with it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"\n--- {stamp} hoststream stack: {shlex.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` (first line), or None when absent or unreadable."""
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def pid_alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and its command line contains ``marker``.

    Checking the command line, not just the pid, catches a stale pid file whose
    number the kernel has since handed to an unrelated process.
    """
    child = _children.get(pid)
    if child is not None:
        # waitpid, unlike /proc, reports the exit only once every thread is gone
        # and with them the process's sockets.
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # Fields after "(comm)": state is the first, flags the seventh.
    fields = stat[stat.rindex(")") + 2 :].split()
    if int(fields[6]) & _PF_KTHREAD:
        return False
    if fields[0] in ("Z", "X"):
        # A main thread that has exited shows as a zombie while the other threads
        # (a Go or Java runtime's) still tear down and still hold the sockets.
        return threads > 1
    # The command line reads empty now and then while a process (a starting JVM
    # notably) holds its memory map lock; only a non-empty one can disprove it.
    return not cmdline or marker.encode() in cmdline


def terminate(pid: int, marker: str, timeout_s: float) -> None:
    """SIGTERM ``pid`` (its whole process group when it leads one), SIGKILL after ``timeout_s``."""
    if not pid_alive(pid, marker):
        return
    if not _signal(pid, signal.SIGTERM) or _wait_gone(pid, marker, timeout_s):
        return
    _signal(pid, signal.SIGKILL)
    _wait_gone(pid, marker, 5.0)


def _signal(pid: int, sig: signal.Signals) -> bool:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, marker: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid, marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_accepts(port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    """Whether ``127.0.0.1:port`` can be bound now (nothing listens on it or on 0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Match what servers do, so a port in TIME_WAIT from our last run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop.

    The stack API is synchronous (CLI, pytest fixtures) but its readiness checks
    use asyncio clients; a caller already inside an event loop gets the coroutine
    run on a private loop in a helper thread instead of a RuntimeError.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="hoststream-stack-async")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything under it to ``uid``:``gid`` (skipping what already is)."""
    for entry in [root, *root.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            st = entry.lstat()
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(entry, uid, gid)


def make_traversable(path: Path) -> list[Path]:
    """Add o+x to ``path``'s ancestors that lack it, so another user can reach ``path``.

    Returns the directories changed, for the caller to tell the user.
    """
    changed = []
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod((mode & 0o7777) | 0o001)
            changed.append(parent)
    return changed
