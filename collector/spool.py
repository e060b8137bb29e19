"""The on-disk spool: every sample waits here, oldest first, until Kafka acknowledges it.

Every sample goes through the spool, not only those taken while Kafka is away:
then a collector killed at any moment loses nothing (the next run sends what
is left, oldest first), and a broker outage needs no second code path.

Samples are numbered and appended to segment files (``<first number>.log``, a
new one every :data:`SEGMENT_BYTES`), each record behind its length and CRC-32
so that a write cut short by a crash is recognised, and cut off, at the next
start. Which samples are done with (acknowledged, dropped from a full spool, or
refused by Kafka for good) goes to the ledger ``done`` as ranges of numbers, one
line per acknowledged batch. A segment whose samples are all done is deleted,
then the ledger is rewritten without the ranges nothing refers to any more. That
is one write per sample and one per batch: a file per sample (create, rename,
unlink) cost the collector several times more CPU. The newest payloads are also
kept in memory (at most :data:`CACHED`), so sending them does not read them
back; a sample read back is checked against its CRC, so a file damaged under a
running collector is an error, never a garbled sample sent. Files are not
fsynced: a power cut may lose the last seconds, a crash does not. A lock file
keeps a second collector off the same spool.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

SEGMENT_BYTES = 2 * 2**20
"""A new segment file is started once the current one holds this much."""
CACHED = 64
"""Most payloads kept in memory beside their files: every sample between two sends
at the shortest intervals; a spool that backs up is read back from its files."""
_SUFFIX = ".log"
_LEDGER = "done"
_DROPPED = "dropped"
_HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload


class SpoolLocked(RuntimeError):
    """Another collector holds this spool; the message names the directory."""


class SpoolDamaged(RuntimeError):
    """A sample read back from a segment is not what was written; the message names the file."""


class _Entry(NamedTuple):
    """A sample waiting in a segment: its number, the segment's and where it lies."""

    number: int
    segment: int
    offset: int
    size: int


class Spool:
    """Samples waiting for Kafka in ``directory``, at most ``max_bytes`` of them.

    When a new sample does not fit, the oldest are dropped to make room and
    counted in :attr:`dropped`, a count kept on disk across restarts; so are
    samples Kafka refused for good (:meth:`refused`).
    Samples taken out with :meth:`oldest` and not yet :meth:`done` are never
    dropped: they may already be on their way to the broker.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        """Open (or create) the spool; raises :class:`SpoolLocked` if another process has it."""
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise SpoolLocked(
                f"another collector is using the spool {directory} "
                "(same topic and host id on this machine)"
            ) from None
        self._prefix = f"{directory}{os.sep}"
        entries, done_until, torn = _scan(directory)
        for segment, good_bytes in torn:
            log.warning(
                "spool %s: the end of segment %d was cut short (a crash while writing); "
                "the samples in it from byte %d on are lost",
                directory,
                segment,
                good_bytes,
            )
            os.truncate(self._segment_path(segment), good_bytes)
        self._entries = collections.deque(entries)
        self._bytes = sum(entry.size for entry in entries)
        # Numbers are never reused, not even those of deleted segments the ledger names.
        self._next = max(done_until, entries[-1].number + 1 if entries else 0)
        self._held: set[int] = set()
        self._cache: dict[int, bytes] = {}
        self._live: collections.Counter[int] = collections.Counter(e.segment for e in entries)
        self._fds = {
            segment: os.open(self._segment_path(segment), os.O_RDONLY | os.O_CLOEXEC)
            for segment in self._live
        }
        for segment in _segments(directory):
            if segment not in self._live:
                os.unlink(self._segment_path(segment))
        self._ledger = -1
        self._rewrite_ledger()
        self._segment = -1  # the segment appended to: none until the first sample
        self._segment_bytes = 0
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
        if self._segment_bytes >= SEGMENT_BYTES or self._segment < 0:
            self._start_segment()
        number = self._next
        self._next += 1
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        fd = self._fds[self._segment]
        written = os.write(fd, record)
        while written < len(record):
            written += os.write(fd, record[written:])
        self._entries.append(
            _Entry(number, self._segment, self._segment_bytes + _HEADER.size, len(payload))
        )
        self._segment_bytes += len(record)
        self._live[self._segment] += 1
        self._bytes += len(payload)
        if len(self._cache) < CACHED:
            self._cache[number] = payload

    def oldest(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` of the oldest samples as (number, payload), now held until done.

        Raises :class:`SpoolDamaged` when a sample read back from its segment is not
        what was written (the file was truncated or overwritten since).
        """
        taken = []
        for entry in itertools.islice(self._entries, limit):
            payload = self._cache.get(entry.number)
            if payload is None:
                payload = self._read(entry)
            taken.append((entry.number, payload))
            self._held.add(entry.number)
        return taken

    def done(self, numbers: Iterable[int]) -> None:
        """Forget samples Kafka acknowledged (or refused for good), in one ledger write."""
        finished = sorted(numbers)
        if not finished:
            return
        self._held.difference_update(finished)
        entries = self._entries
        for number in finished:
            if entries and entries[0].number == number:
                self._forget(entries.popleft())
                continue
            for position, entry in enumerate(entries):
                if entry.number == number:
                    del entries[position]
                    self._forget(entry)
                    break
        self._record_done(finished)

    def refused(self, number: int) -> None:
        """Forget a sample Kafka refused for good (too large), counting it in :attr:`dropped`."""
        self.done([number])
        self._count_dropped(1)

    def release(self) -> None:
        """Samples taken with :meth:`oldest` and not done may be dropped again."""
        self._held.clear()

    def close(self) -> None:
        """Release the lock and the files; the samples stay for the next run."""
        for fd in (*self._fds.values(), self._ledger, self._lock):
            os.close(fd)
        self._fds.clear()

    def _start_segment(self) -> None:
        previous = self._segment
        self._segment = self._next
        self._segment_bytes = 0
        self._fds[self._segment] = os.open(
            self._segment_path(self._segment),
            os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o644,
        )
        if previous >= 0 and not self._live[previous]:
            self._delete_segments([previous])

    def _make_room(self, size: int) -> None:
        dropped = []
        position = 0
        while self._bytes + size > self.max_bytes and position < len(self._entries):
            entry = self._entries[position]
            if entry.number in self._held:
                position += 1
                continue
            del self._entries[position]
            self._forget(entry)
            dropped.append(entry.number)
        if dropped:
            self._record_done(dropped)
            self._count_dropped(len(dropped))
            if not self._dropping:
                log.error(
                    "spool %s is full (%d bytes): dropping the oldest samples; "
                    "%d dropped so far, each sample reports the count",
                    self.directory,
                    self.max_bytes,
                    self.dropped,
                )
        self._dropping = bool(dropped)

    def _count_dropped(self, count: int) -> None:
        self.dropped += count
        (self.directory / _DROPPED).write_text(str(self.dropped))

    def _read(self, entry: _Entry) -> bytes:
        start = entry.offset - _HEADER.size
        record = os.pread(self._fds[entry.segment], _HEADER.size + entry.size, start)
        payload = record[_HEADER.size :]
        if len(payload) == entry.size and _HEADER.unpack_from(record) == (
            entry.size,
            zlib.crc32(payload),
        ):
            return payload
        raise SpoolDamaged(
            f"sample {entry.number} in the spool file {self._segment_path(entry.segment)} "
            f"(bytes {start} to {start + _HEADER.size + entry.size}) is not what was written: "
            "the file was truncated, overwritten or damaged since"
        )

    def _forget(self, entry: _Entry) -> None:
        self._cache.pop(entry.number, None)
        self._bytes -= entry.size
        self._live[entry.segment] -= 1

    def _record_done(self, numbers: list[int]) -> None:
        os.write(self._ledger, _ranges_text(numbers))
        emptied = [s for s, live in self._live.items() if not live and s != self._segment]
        if emptied:
            self._delete_segments(emptied)

    def _delete_segments(self, segments: list[int]) -> None:
        # Segments first, then the ledger: a crash in between leaves ranges that name
        # nothing, never a sample without the range that says it is done.
        for segment in segments:
            os.close(self._fds.pop(segment))
            del self._live[segment]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._segment_path(segment))
        self._rewrite_ledger()

    def _rewrite_ledger(self) -> None:
        """The ledger as the complement of the waiting samples, from the oldest segment on."""
        start = min(self._fds, default=self._next)
        done = []
        for entry in self._entries:
            if entry.number > start:
                done.append((start, entry.number))
            start = entry.number + 1
        if start < self._next:
            done.append((start, self._next))
        partial = self.directory / f"{_LEDGER}.tmp"
        partial.write_bytes(b"".join(b"%d %d\n" % pair for pair in done))
        partial.replace(self.directory / _LEDGER)
        if self._ledger >= 0:
            os.close(self._ledger)
        self._ledger = os.open(self.directory / _LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def _segment_path(self, segment: int) -> str:
        # Zero-padded so names sort in sample order.
        return f"{self._prefix}{segment:016d}{_SUFFIX}"


def spooled(directory: Path) -> list[bytes]:
    """The samples waiting in the spool at ``directory``, oldest first, read without
    taking it over (to look at the spool of a collector that runs, or ran)."""
    entries, _, _ = _scan(directory)
    payloads = []
    for entry in entries:
        try:
            with open(directory / f"{entry.segment:016d}{_SUFFIX}", "rb") as file:
                file.seek(entry.offset)
                payloads.append(file.read(entry.size))
        except FileNotFoundError:  # sent and deleted since the scan
            continue
    return payloads


def spool_directory(collector_dir: Path, topic: str, host_id: str) -> Path:
    """Where a collector spools: one spool per topic and host id, since a spooled
    sample belongs to the topic it was meant for and carries its host's key."""

    def safe(name: str) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"

    return collector_dir / "spool" / safe(topic) / safe(host_id)


def _segments(directory: Path) -> list[int]:
    return sorted(int(path.stem) for path in directory.glob(f"*{_SUFFIX}"))


def _scan(directory: Path) -> tuple[list[_Entry], int, list[tuple[int, int]]]:
    """The samples not done, the end of the highest range in the ledger, and the
    segments whose last record is cut short, as (segment, bytes of whole records)."""
    done: list[tuple[int, int]] = []
    with contextlib.suppress(FileNotFoundError):
        # A last line without its newline was being written when the collector died.
        for line in (directory / _LEDGER).read_bytes().split(b"\n")[:-1]:
            first, end = map(int, line.split())
            done.append((first, end))
    done.sort()
    entries = []
    torn = []
    position = 0  # records come in increasing numbers: one pass over the sorted ranges
    for segment in _segments(directory):
        try:
            data = (directory / f"{segment:016d}{_SUFFIX}").read_bytes()
        except FileNotFoundError:  # all done and deleted by the collector since listed
            continue
        for number, offset, size, whole in _records(data, segment):
            if not whole:
                torn.append((segment, offset))
                break
            while position < len(done) and done[position][1] <= number:
                position += 1
            if position == len(done) or number < done[position][0]:
                entries.append(_Entry(number, segment, offset + _HEADER.size, size))
    return entries, max((end for _, end in done), default=0), torn


def _records(data: bytes, first: int) -> Iterator[tuple[int, int, int, bool]]:
    """(number, offset, payload size, whether it is whole) of each record in a segment."""
    offset = 0
    for number in itertools.count(first):
        if offset == len(data):
            return
        if offset + _HEADER.size > len(data):
            yield number, offset, 0, False
            return
        size, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + size]
        if len(payload) < size or zlib.crc32(payload) != crc:
            yield number, offset, size, False
            return
        yield number, offset, size, True
        offset = start + size


def _ranges_text(numbers: list[int]) -> bytes:
    """Sorted sample numbers as ledger lines: ``first end`` per run, end excluded."""
    lines = []
    first = previous = numbers[0]
    for number in numbers[1:]:
        if number != previous + 1:
            lines.append(b"%d %d\n" % (first, previous + 1))
            first = number
        previous = number
    lines.append(b"%d %d\n" % (first, previous + 1))
    return b"".join(lines)
