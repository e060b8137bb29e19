"""Rows of the medallion tables, and the pure rules that build them.

Field names are column names: the PostgreSQL sink copies them as they are.
The rows built for every record are slotted but not frozen dataclasses: a
frozen one takes twice as long to build, and the worker builds several per record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from schemas.metrics import MetricsSample
from schemas.validation import RejectedRecord, check_not_in_future, read_sample, sample_time
from schemas.windows import WindowSample


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
    kafka_time: datetime
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
        kafka_time=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
        ingested_at=ingested_at,
    )


def silver_row(sample: MetricsSample, moment: datetime, record: KafkaRecord) -> SilverRow:
    """Normalise a validated sample, taken at ``moment`` (its :func:`sample_time`), into
    its silver row."""
    disk_used = disk_total = 0
    disk_max = 0.0
    for disk in sample.disks:
        disk_used += disk.used_bytes
        disk_total += disk.total_bytes
        disk_max = max(disk_max, disk.percent)
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


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record silver refused, with the reason in one line."""

    record: KafkaRecord
    reason: str


def validate_batch(
    records: Iterable[KafkaRecord],
    now: datetime,
    max_future_skew_s: float,
) -> tuple[list[SilverRow], list[Rejection]]:
    """Split a batch of Kafka records into silver rows and rejections, keeping order.

    ``now`` (aware, UTC) and ``max_future_skew_s`` bound how far in the future a
    sample's timestamp may be.
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
            moment = sample_time(sample)
            check_not_in_future(sample, moment, now, max_future_skew_s)
            rows.append(silver_row(sample, moment, record))
        except RejectedRecord as exc:
            rejections.append(Rejection(record, str(exc)))
    return rows, rejections


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
