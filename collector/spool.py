"""The on-disk spool: every sample waits here, oldest first, until Kafka acknowledges it.

Every sample goes through the spool, not only those taken while Kafka is away:
then a collector killed at any moment loses nothing (the next run sends what
is left, oldest first), and a broker outage needs no second code path. One
file per sample, written aside and renamed into place, so a crash never
leaves a torn record; a lock file keeps a second collector off the same spool.
The cost is a file create, write, rename and unlink per sample: tens of
microseconds. The newest payloads are also kept in memory (at most
:data:`CACHED`), so sending them does not read the file back. Files are not
fsynced: a power cut may lose the last seconds, a crash does not.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_SUFFIX = ".json"
_DROPPED = "dropped"
CACHED = 256
"""Most payloads kept in memory beside their files: more than one send batch."""


class SpoolLocked(RuntimeError):
    """Another collector holds this spool; the message names the directory."""


class Spool:
    """Samples waiting for Kafka in ``directory``, at most ``max_bytes`` of them.

    When a new sample does not fit, the oldest are deleted to make room and
    counted in :attr:`dropped`, a count kept on disk across restarts.
    Samples taken out with :meth:`oldest` but not yet :meth:`remove`-d are
    never dropped: they may already be on their way to the broker.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        """Open (or create) the spool; raises :class:`SpoolLocked` if another process has it."""
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise SpoolLocked(
                f"another collector is using the spool {directory} "
                "(same topic and host id on this machine)"
            ) from None
        for partial in directory.glob("*.tmp"):
            partial.unlink()
        self._entries: collections.deque[tuple[int, int]] = collections.deque(
            sorted((int(p.stem), p.stat().st_size) for p in directory.glob(f"*{_SUFFIX}"))
        )
        self._bytes = sum(size for _, size in self._entries)
        self._next = self._entries[-1][0] + 1 if self._entries else 0
        self._held: set[int] = set()
        self._cache: dict[int, bytes] = {}
        self._prefix = f"{directory}{os.sep}"
        try:
            self.dropped = int((directory / _DROPPED).read_text())
        except (FileNotFoundError, ValueError):
            self.dropped = 0
        self._dropping = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of samples in the spool."""
        return self._bytes

    def append(self, payload: bytes) -> None:
        """Add a sample behind the others, dropping the oldest ones if it does not fit."""
        self._make_room(len(payload))
        number = self._next
        self._next += 1
        path = self._name(number)
        partial = f"{self._prefix}{number:016d}.tmp"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            written = os.write(fd, payload)
            if written < len(payload):
                os.write(fd, payload[written:])
        finally:
            os.close(fd)
        os.rename(partial, path)
        self._entries.append((number, len(payload)))
        self._bytes += len(payload)
        if len(self._cache) < CACHED:
            self._cache[number] = payload

    def oldest(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` of the oldest samples as (number, payload), now held until removed."""
        taken = []
        for number, _ in itertools.islice(self._entries, limit):
            payload = self._cache.get(number)
            if payload is None:
                with open(self._name(number), "rb") as file:
                    payload = file.read()
            taken.append((number, payload))
            self._held.add(number)
        return taken

    def remove(self, number: int) -> None:
        """Forget a sample Kafka acknowledged."""
        self._held.discard(number)
        for position, (entry, size) in enumerate(self._entries):
            if entry == number:
                del self._entries[position]
                self._bytes -= size
                self._forget(number)
                return

    def release(self) -> None:
        """Samples taken with :meth:`oldest` and not removed may be dropped again."""
        self._held.clear()

    def close(self) -> None:
        """Release the lock; the samples stay for the next run."""
        os.close(self._lock)

    def _make_room(self, size: int) -> None:
        dropped_now = 0
        position = 0
        while self._bytes + size > self.max_bytes and position < len(self._entries):
            number, entry_size = self._entries[position]
            if number in self._held:
                position += 1
                continue
            del self._entries[position]
            self._bytes -= entry_size
            self._forget(number)
            dropped_now += 1
        if dropped_now:
            self.dropped += dropped_now
            (self.directory / _DROPPED).write_text(str(self.dropped))
            if not self._dropping:
                log.error(
                    "spool %s is full (%d bytes): dropping the oldest samples; "
                    "%d dropped so far, each sample reports the count",
                    self.directory,
                    self.max_bytes,
                    self.dropped,
                )
        self._dropping = dropped_now > 0

    def _forget(self, number: int) -> None:
        self._cache.pop(number, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name(number))

    def _name(self, number: int) -> str:
        # Zero-padded so names sort in sample order.
        return f"{self._prefix}{number:016d}{_SUFFIX}"


def spool_directory(collector_dir: Path, topic: str, host_id: str) -> Path:
    """Where a collector spools: one spool per topic and host id, since a spooled
    sample belongs to the topic it was meant for and carries its host's key."""

    def safe(name: str) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"

    return collector_dir / "spool" / safe(topic) / safe(host_id)
