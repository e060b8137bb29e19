"""The raw data lake's rules: a record's event hour, its NDJSON line, where a
partition's records are cut into objects, and the objects' names.

Every rule here is a function of the records alone, never of the clock: a worker that
reads a partition again from the same offset (after a crash or a rebalance) cuts the
same objects and names them the same. The one cut made on the clock, a quiet
partition's (see :meth:`OpenObject.is_quiet`), is committed before the partition's next
object is written, so a rerun starts from it.

An object holds a contiguous run of one partition's records of one event hour, at
``raw/<topic>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first offset>.ndjson[.gz]``.
A line is a JSON object: ``topic``, ``partition``, ``offset``, ``timestamp`` (the Kafka
timestamp, epoch milliseconds, -1 for none), ``key`` (UTF-8 text, or null; a key that
is not UTF-8 is ``key_base64`` instead), then the payload, last: ``payload`` with the
value itself when it is JSON on one line (embedded byte for byte), else ``payload_text``
(a string) when it is UTF-8, else ``payload_base64``; a record without a value has none.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from schemas.rows import KafkaRecord

RAW_PREFIX = "raw"
NDJSON = ".ndjson"
GZIP = ".gz"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
_HOUR_MS = 3_600_000
_LAST_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last Kafka timestamp an hour can be named for."""


def event_hour_of(document: Any, timestamp_ms: int) -> int:
    """The event hour of a record, as whole hours since 1970-01-01T00Z.

    The hour of the sample's ``timestamp`` when ``document`` (the parsed payload) is an
    object whose ``timestamp`` is ISO 8601 with a time zone; otherwise the hour of the
    Kafka timestamp; hour 0 when that is missing (-1) or past year 9999 too.
    """
    if isinstance(document, dict):
        stamp = document.get("timestamp")
        if isinstance(stamp, str):
            try:
                moment = datetime.fromisoformat(stamp)
                if moment.tzinfo is not None:
                    return (moment.astimezone(UTC) - EPOCH) // HOUR
            except (ValueError, OverflowError):
                pass
    if 0 <= timestamp_ms <= _LAST_MS:
        return timestamp_ms // _HOUR_MS
    return 0


_NOT_JSON = object()


_MAX_DEPTH = 1024
"""orjson's nesting limit: a line nests its payload one level deeper than sent."""


def _parsed(value: bytes) -> Any:
    """The payload parsed, or ``_NOT_JSON`` when it is not JSON or when, nested in its
    line, it would be too deep for a reader."""
    try:
        document = orjson.loads(value)
        if value.count(b"[") + value.count(b"{") >= _MAX_DEPTH:
            orjson.loads(b"[" + value + b"]")
    except orjson.JSONDecodeError:
        return _NOT_JSON
    return document


def archived(record: KafkaRecord) -> tuple[int, bytes]:
    """A record's event hour (see :func:`event_hour_of`) and its line, newline included."""
    line: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
    }
    key = record.key
    try:
        line["key"] = None if key is None else key.decode()
    except UnicodeDecodeError:
        line["key_base64"] = base64.b64encode(key).decode()  # type: ignore[arg-type]
    value = record.value
    document = _NOT_JSON if value is None else _parsed(value)
    if value is None:
        pass
    elif document is not _NOT_JSON and b"\n" not in value and b"\r" not in value:
        line["payload"] = orjson.Fragment(value)
    else:
        try:
            line["payload_text"] = value.decode()
        except UnicodeDecodeError:
            line["payload_base64"] = base64.b64encode(value).decode()
    return event_hour_of(document, record.timestamp), orjson.dumps(line) + b"\n"


def hour_start(hour: int) -> datetime:
    """The UTC start of an event hour given as hours since 1970-01-01T00Z."""
    return EPOCH + hour * HOUR


def hour_number(moment: datetime) -> int:
    """The event hour (hours since 1970-01-01T00Z) that holds ``moment`` (aware)."""
    return (moment.astimezone(UTC) - EPOCH) // HOUR


def hour_prefix(topic: str, hour: int) -> str:
    """The folder of one topic's objects of one event hour, ending with ``/``."""
    start = hour_start(hour)
    day = f"{start.year:04d}-{start.month:02d}-{start.day:02d}"
    return f"{RAW_PREFIX}/{topic}/dt={day}/hour={start.hour:02d}/"


def object_name(topic: str, partition: int, first_offset: int, hour: int, gzipped: bool) -> str:
    """``raw/<topic>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first offset>.ndjson[.gz]``."""
    suffix = NDJSON + (GZIP if gzipped else "")
    return f"{hour_prefix(topic, hour)}{topic}+{partition}+{first_offset}{suffix}"


_NAME = re.compile(r"(?P<topic>[^/]+)\+(?P<partition>\d+)\+(?P<offset>\d+)\.ndjson(?P<gz>\.gz)?")


@dataclass(frozen=True, order=True)
class ObjectName:
    """What an object's name says: its partition, first offset and compression."""

    partition: int
    first_offset: int
    name: str = field(compare=False)
    gzipped: bool = field(compare=False)


class BadObject(ValueError):
    """An object of the lake that is not what the lake writes, with where and why."""


def parse_object_name(name: str, topic: str) -> ObjectName:
    """Read a lake object's name; raises :class:`BadObject` for one the lake would not
    write for ``topic``."""
    match = _NAME.fullmatch(name.rsplit("/", 1)[-1])
    if match is None or match["topic"] != topic:
        raise BadObject(f"{name}: not named {topic}+<partition>+<first offset>.ndjson[.gz]")
    return ObjectName(int(match["partition"]), int(match["offset"]), name, bool(match["gz"]))


@dataclass(frozen=True)
class LakeLimits:
    """When a partition's open object is cut (see :meth:`OpenObject.takes`)."""

    max_records: int
    max_bytes: int
    max_age_s: float
    """Quiet partitions only: see :meth:`OpenObject.is_quiet`."""
    gzip: bool


@dataclass
class OpenObject:
    """A partition's records not yet in the lake: a contiguous run of one event hour."""

    partition: int
    hour: int
    first_offset: int
    opened_at: float
    """Monotonic clock when its first record was added (for quiet partitions only)."""
    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    end_offset: int = 0
    """The offset after its last record: what is committed once it is written."""

    def takes(self, hour: int, line: bytes, limits: LakeLimits) -> bool:
        """Whether the partition's next record (its ``hour`` and ``line``) joins this
        object: same event hour, and neither limit reached. An object always takes its
        first record, however large."""
        return (
            hour == self.hour
            and len(self.lines) < limits.max_records
            and self.size + len(line) <= limits.max_bytes
        )

    def add(self, offset: int, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line)
        self.end_offset = offset + 1

    def is_quiet(self, now: float, caught_up: bool, max_age_s: float) -> bool:
        """Whether to write it now although no rule cut it: its first record came
        ``max_age_s`` ago and its partition has nothing more to read (``caught_up``: the
        consumer is at the partition's end), so waiting would only delay it."""
        return caught_up and now - self.opened_at >= max_age_s


@dataclass(frozen=True)
class LakeObject:
    """An object ready to upload, and the offset to commit once it is written."""

    name: str
    data: bytes
    partition: int
    first_offset: int
    end_offset: int
    records: int

    @classmethod
    def of(cls, topic: str, run: OpenObject, gzipped: bool) -> LakeObject:
        data = b"".join(run.lines)
        if gzipped:
            # mtime 0: the same records give the same bytes on a rerun.
            data = gzip.compress(data, mtime=0)
        return cls(
            name=object_name(topic, run.partition, run.first_offset, run.hour, gzipped),
            data=data,
            partition=run.partition,
            first_offset=run.first_offset,
            end_offset=run.end_offset,
            records=len(run.lines),
        )


@dataclass(frozen=True)
class LakeRecord:
    """A record as read back from a lake line: enough to produce it again."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class BadLine(ValueError):
    """A line that is not a record as the lake writes them."""


class _Payload(msgspec.Struct):
    # msgspec hands out the payload's bytes as they are in the line.
    payload: msgspec.Raw = msgspec.Raw(b"")


_PAYLOAD = msgspec.json.Decoder(_Payload)
_FIELDS = {"topic", "partition", "offset", "timestamp", "key", "key_base64"}
_PAYLOADS = ("payload", "payload_text", "payload_base64")


def read_line(line: bytes) -> LakeRecord:
    """The record of one lake line (without its newline); raises :class:`BadLine`."""
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadLine(f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise BadLine("not a JSON object")
    unknown = set(fields) - _FIELDS - set(_PAYLOADS)
    if unknown:
        raise BadLine(f"unknown fields {sorted(unknown)}")
    for name, kind in (("topic", str), ("partition", int), ("offset", int), ("timestamp", int)):
        if not isinstance(fields.get(name), kind) or isinstance(fields[name], bool):
            raise BadLine(f"{name} missing or not a {kind.__name__}")
    if fields["partition"] < 0 or fields["offset"] < 0:
        raise BadLine("negative partition or offset")
    payloads = [name for name in _PAYLOADS if name in fields]
    if len(payloads) > 1 or ("key" in fields) == ("key_base64" in fields):
        raise BadLine("not exactly one key and at most one payload")
    try:
        key = _key(fields)
        value = _value(line, fields, payloads[0] if payloads else None)
    except (TypeError, ValueError, binascii.Error, msgspec.DecodeError) as exc:
        raise BadLine(f"bad key or payload: {exc}") from None
    return LakeRecord(
        fields["topic"], fields["partition"], fields["offset"], fields["timestamp"], key, value
    )


def _key(fields: dict[str, Any]) -> bytes | None:
    if "key_base64" in fields:
        return base64.b64decode(fields["key_base64"], validate=True)
    key = fields["key"]
    if key is not None and not isinstance(key, str):
        raise TypeError("key is neither text nor null")
    return None if key is None else key.encode()


def _value(line: bytes, fields: dict[str, Any], kind: str | None) -> bytes | None:
    if kind is None:
        return None
    if kind == "payload":
        return bytes(_PAYLOAD.decode(line).payload)
    text = fields[kind]
    if not isinstance(text, str):
        raise TypeError(f"{kind} is not a string")
    return text.encode() if kind == "payload_text" else base64.b64decode(text, validate=True)


def read_object(name: ObjectName, data: bytes) -> Iterator[LakeRecord]:
    """The records of one object, checked to be what its name says: lines of its
    partition from its first offset on, offsets increasing. Raises :class:`BadObject`
    naming the object and the line."""
    if name.gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise BadObject(f"{name.name}: not gzip: {exc}") from None
    if data and not data.endswith(b"\n"):
        raise BadObject(f"{name.name}: the last line has no newline (cut short?)")
    previous = name.first_offset - 1
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            record = read_line(line)
        except BadLine as exc:
            raise BadObject(f"{name.name} line {number}: {exc}") from None
        if number == 1 and record.offset != name.first_offset:
            raise BadObject(
                f"{name.name} line 1: offset {record.offset}, not the name's {name.first_offset}"
            )
        if record.partition != name.partition or record.offset <= previous:
            raise BadObject(
                f"{name.name} line {number}: partition {record.partition} offset "
                f"{record.offset} does not follow offset {previous} of partition {name.partition}"
            )
        previous = record.offset
        yield record


@dataclass
class LakeStats:
    """The lake agent's figures since the worker started, served at ``/stats/``."""

    objects: int = 0
    """Objects written and committed."""
    records: int = 0
    """Records in those objects."""
    bytes: int = 0
    """Bytes uploaded."""
    paused_partitions: int = 0
    """Partitions not read now because their objects wait for GCS."""


def parse_hour(text: str) -> int:
    """An event hour written ``YYYY-MM-DDTHH`` (UTC), or any ISO 8601 time within it (UTC
    unless it names a zone); raises ``ValueError`` naming the expected form."""
    try:
        moment = datetime.fromisoformat(text if len(text) != 13 else f"{text}:00")
    except ValueError:
        raise ValueError(f"{text!r} is not an hour like 2026-11-22T10 (UTC)") from None
    return hour_number(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
