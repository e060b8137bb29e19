"""Rows of the medallion tables, and the pure rules that build them.

Field names are column names: the PostgreSQL sink copies them as they are.
The rows built for every record are slotted but not frozen dataclasses: a
frozen one takes twice as long to build, and the worker builds several per record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson

from schemas.metrics import MetricsSample
from schemas.validation import (
    RejectedRecord,
    bounded_reason,
    check_not_in_future,
    quoted,
    read_sample,
    sample_time,
)
from schemas.windows import INT64_MAX, WindowSample


class KafkaRecord(Protocol):
    """A record as read from Kafka. aiokafka's records have these attributes: rows are
    built from them directly, without a copy per record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int:
        """Broker or producer timestamp of the message, epoch milliseconds."""
        ...


@dataclass(slots=True)
class BronzeRow:
    """``bronze.bronze_performance``: every record exactly as received.

    Keyed by (topic, partition, offset), so a replay after a crash rewrites
    nothing.
    """

    topic: str
    partition: int
    offset: int
    message_key: str | None
    payload: str
    """The raw value as UTF-8 text: JSON when the producer sent JSON, anything otherwise."""
    kafka_time: datetime | None
    """The record's Kafka timestamp; None when it has none (-1) or one past year 9999."""
    ingested_at: datetime


@dataclass(slots=True)
class SilverRow:
    """``silver.silver_performance``: one validated, normalised sample, keyed by event_id."""

    event_id: str
    host_id: str
    hostname: str
    sample_time: datetime
    schema_version: int
    cpu_percent: float
    cpu_fraction: float
    """``cpu_percent`` / 100, 0-1: the seed's consumers read a fraction."""
    memory_percent: float
    memory_fraction: float
    memory_used_bytes: int
    memory_available_bytes: int
    memory_total_bytes: int
    disk_used_bytes: int
    """Summed over mounted filesystems."""
    disk_total_bytes: int
    disk_max_percent: float
    """Fullest mounted filesystem, percent 0-100; 0 when the host reported none."""
    net_bytes_sent_per_s: float
    net_bytes_recv_per_s: float
    net_bytes_sent_delta: int
    """Bytes sent since the host's previous sample: sum these for traffic totals."""
    net_bytes_recv_delta: int
    net_bytes_sent: int
    """Cumulative counter as the kernel reports it: never sum it over samples."""
    net_bytes_recv: int
    source_topic: str
    source_partition: int
    source_offset: int


def bronze_row(record: KafkaRecord, ingested_at: datetime) -> BronzeRow:
    """The bronze row of one Kafka record, whatever its value holds."""
    key = record.key
    return BronzeRow(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        message_key=_text(key) if key is not None else None,
        payload=_text(record.value or b""),
        kafka_time=kafka_time(record.timestamp),
        ingested_at=ingested_at,
    )


def kafka_time(timestamp_ms: int) -> datetime | None:
    """A Kafka timestamp (epoch milliseconds) as a datetime; None for none (negative) or
    one outside the calendar: any producer may set any 64-bit value."""
    if timestamp_ms < 0:
        return None
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def silver_row(sample: MetricsSample, moment: datetime, record: KafkaRecord) -> SilverRow:
    """Normalise a validated sample, taken at ``moment`` (its :func:`sample_time`), into
    its silver row."""
    disk_used = disk_total = 0
    disk_max = 0.0
    for disk in sample.disks:
        disk_used += disk.used_bytes
        disk_total += disk.total_bytes
        disk_max = max(disk_max, disk.percent)
    if disk_total > INT64_MAX or disk_used > INT64_MAX:
        raise RejectedRecord("disks: the sum of total_bytes or used_bytes does not fit in 64 bits")
    return SilverRow(
        event_id=sample.event_id,
        host_id=sample.host_id,
        hostname=sample.hostname,
        sample_time=moment,
        schema_version=sample.schema_version,
        cpu_percent=sample.cpu.percent,
        cpu_fraction=sample.cpu.percent / 100.0,
        memory_percent=sample.memory.percent,
        memory_fraction=sample.memory.percent / 100.0,
        memory_used_bytes=sample.memory.used_bytes,
        memory_available_bytes=sample.memory.available_bytes,
        memory_total_bytes=sample.memory.total_bytes,
        disk_used_bytes=disk_used,
        disk_total_bytes=disk_total,
        disk_max_percent=disk_max,
        net_bytes_sent_per_s=sample.network.bytes_sent_per_s,
        net_bytes_recv_per_s=sample.network.bytes_recv_per_s,
        net_bytes_sent_delta=sample.network.bytes_sent_delta,
        net_bytes_recv_delta=sample.network.bytes_recv_delta,
        net_bytes_sent=sample.network.bytes_sent,
        net_bytes_recv=sample.network.bytes_recv,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
    )


def _text(raw: bytes) -> str:
    # PostgreSQL text cannot hold NUL; bronze keeps everything else byte for byte.
    return raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
"""Control characters and lone surrogates: text PostgreSQL cannot take or a reader
cannot print."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record silver refused, with the reason in one line."""

    record: KafkaRecord
    reason: str

    @classmethod
    def of(cls, record: KafkaRecord, reason: str) -> Rejection:
        """A rejection whose reason is one short line (:func:`bounded_reason`)."""
        return cls(record, bounded_reason(reason))


@dataclass(frozen=True, slots=True)
class Limits:
    """What silver accepts beyond the schema: values PostgreSQL can store and index,
    and sample times a window can hold."""

    max_future_skew_s: float = 300.0
    """How far past ``now`` a sample may be stamped, seconds."""
    max_id_chars: int = 256
    """Longest ``host_id`` and ``event_id``: both are index keys."""
    max_text_chars: int = 1024
    """Longest ``hostname``."""


def _check_text(name: str, value: str, max_chars: int) -> None:
    if len(value) > max_chars:
        raise RejectedRecord(
            f"{name} {quoted(value)} is longer than {max_chars} characters "
            "(HOSTSTREAM_MAX_ID_CHARS / HOSTSTREAM_MAX_TEXT_CHARS)"
        )
    # isprintable() is false for every control character: the search runs rarely.
    if not value.isprintable() and _CONTROL.search(value):
        raise RejectedRecord(f"{name} {quoted(value)} holds control characters")


def check_identity(sample: MetricsSample, key: bytes | None, limits: Limits) -> None:
    """Raise :class:`RejectedRecord` unless the sample's identifiers are storable and
    the record is keyed by its host: a host's samples must all land on one partition,
    where its windows live."""
    _check_text("event_id", sample.event_id, limits.max_id_chars)
    _check_text("host_id", sample.host_id, limits.max_id_chars)
    _check_text("hostname", sample.hostname, limits.max_text_chars)
    if key != sample.host_id.encode():
        shown = "no key" if key is None else f"key {quoted(_text(key))}"
        raise RejectedRecord(
            f"record has {shown}, not its host_id {quoted(sample.host_id)}: produce each "
            "sample keyed by its host_id, so that a host's samples share one partition"
        )


def validate_batch(
    records: Iterable[KafkaRecord],
    now: datetime,
    limits: Limits,
) -> tuple[list[SilverRow], list[Rejection]]:
    """Split a batch of Kafka records into silver rows and rejections, keeping order.

    ``now`` (aware, UTC) and ``limits.max_future_skew_s`` bound how far in the future
    a sample's timestamp may be. No record can raise: whatever goes wrong with one
    is its rejection's reason.
    """
    rows: list[SilverRow] = []
    rejections: list[Rejection] = []
    for record in records:
        value = record.value
        if value is None:
            rejections.append(Rejection(record, "empty value (tombstone)"))
            continue
        try:
            sample = read_sample(value)
            check_identity(sample, record.key, limits)
            moment = sample_time(sample)
            check_not_in_future(sample, moment, now, limits.max_future_skew_s)
            rows.append(silver_row(sample, moment, record))
        except RejectedRecord as exc:
            rejections.append(Rejection.of(record, str(exc)))
        except Exception as exc:  # a record must never stop the batch
            rejections.append(Rejection.of(record, f"unreadable: {type(exc).__name__}: {exc}"))
    return rows, rejections


def first_copies(rows: list[SilverRow]) -> list[SilverRow]:
    """The rows whose ``event_id`` comes first in the batch (Kafka order): the first
    copy of a sample is the one that counts, a later one is a duplicate."""
    seen: set[str] = set()
    first = []
    for row in rows:
        if row.event_id not in seen:
            seen.add(row.event_id)
            first.append(row)
    return first


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record as the dead-letter topic gets it."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(rejection: Rejection, max_bytes: int) -> DeadLetter:
    """The record as received, with the reason and its origin in headers; cut to
    ``max_bytes`` (key + value) when larger, with a ``hoststream-truncated`` header
    giving the original size: the broker refuses a message over its limit, and
    ``silver.rejected`` keeps the whole record anyway."""
    record = rejection.record
    key, value = record.key, record.value or b""
    headers = [
        ("hoststream-reason", rejection.reason.encode()),
        ("hoststream-source", f"{record.topic}[{record.partition}]@{record.offset}".encode()),
    ]
    size = len(key or b"") + len(value)
    if size > max_bytes:
        if key is not None:
            key = key[: min(len(key), max_bytes // 2, 1024)]
        value = value[: max_bytes - len(key or b"")]
        headers.append(("hoststream-truncated", str(size).encode()))
    return DeadLetter(key, value, headers)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """``silver.rejected``: a record silver refused, keyed by its Kafka coordinates."""

    topic: str
    partition: int
    offset: int
    message_key: str | None
    reason: str
    payload: str
    rejected_at: datetime


def rejected_row(rejection: Rejection, rejected_at: datetime) -> RejectedRow:
    """The ``silver.rejected`` row of a rejection, payload as bronze keeps it."""
    raw = bronze_row(rejection.record, rejected_at)
    return RejectedRow(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        message_key=raw.message_key,
        reason=rejection.reason,
        payload=raw.payload,
        rejected_at=rejected_at,
    )


def window_sample(row: SilverRow) -> WindowSample:
    """What gold aggregates of a silver row."""
    return WindowSample(
        host_id=row.host_id,
        sample_time_s=row.sample_time.timestamp(),
        partition=row.source_partition,
        offset=row.source_offset,
        cpu_percent=row.cpu_percent,
        memory_percent=row.memory_percent,
        disk_max_percent=row.disk_max_percent,
        net_bytes_sent_delta=row.net_bytes_sent_delta,
        net_bytes_recv_delta=row.net_bytes_recv_delta,
    )


@dataclass(frozen=True, slots=True)
class HostRow:
    """``silver.hosts``: one row per host, its newest sample's main figures and tags.

    Silver has no tags, and the newest sample of every host is a scan of it: this
    small table answers the API's host list and ``/latest`` lookups. Upserted where
    the sample is newer, so a replay or a late copy never moves it back.
    """

    host_id: str
    hostname: str
    last_sample_time: datetime
    tags: str
    """The newest sample's tags as a JSON object (key -> value); ``{}`` when it had none."""
    cpu_percent: float
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    disk_max_percent: float
    net_bytes_sent_per_s: float
    net_bytes_recv_per_s: float
    source_partition: int
    source_offset: int


def host_rows(rows: Iterable[SilverRow], values: dict[tuple[int, int], bytes]) -> list[HostRow]:
    """The :class:`HostRow` of each host's newest sample among ``rows`` (the later in
    Kafka order on a tie); ``values``: the Kafka value of each (partition, offset),
    read again for the tags (once per host, not per sample)."""
    newest: dict[str, SilverRow] = {}
    for row in rows:
        held = newest.get(row.host_id)
        if held is None or row.sample_time >= held.sample_time:
            newest[row.host_id] = row
    return [
        HostRow(
            host_id=row.host_id,
            hostname=row.hostname,
            last_sample_time=row.sample_time,
            tags=_tags_json(values.get((row.source_partition, row.source_offset))),
            cpu_percent=row.cpu_percent,
            memory_percent=row.memory_percent,
            memory_used_bytes=row.memory_used_bytes,
            memory_total_bytes=row.memory_total_bytes,
            disk_max_percent=row.disk_max_percent,
            net_bytes_sent_per_s=row.net_bytes_sent_per_s,
            net_bytes_recv_per_s=row.net_bytes_recv_per_s,
            source_partition=row.source_partition,
            source_offset=row.source_offset,
        )
        for row in newest.values()
    ]


def _tags_json(value: bytes | None) -> str:
    # The record passed silver's checks, so it decodes; its tags are any JSON text, and
    # PostgreSQL's jsonb refuses NUL, orjson lone surrogates: such tags are left out.
    tags = read_sample(value).tags if value is not None else None
    kept = {t.key: t.value for t in tags or () if "\x00" not in t.key and "\x00" not in t.value}
    try:
        return orjson.dumps(kept).decode()
    except orjson.JSONEncodeError:
        return "{}"
