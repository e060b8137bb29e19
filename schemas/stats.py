"""Counters of what this worker did, served at ``/stats/`` and ``/metrics``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class _Positioned(Protocol):
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


@dataclass
class PipelineStats:
    """Totals since this worker started."""

    processed: int = 0
    """Records every stage has processed: gold's state holds their samples."""
    acknowledged: int = 0
    """Records every sink has flushed, so Faust may commit their offsets."""
    bronze_rows: int = 0
    """Rows new to bronze (a replayed record is not counted twice)."""
    silver_rows: int = 0
    """Rows new to silver (a duplicated sample is not counted twice)."""
    rejected: int = 0
    """Records silver refused; each is logged with its offset and reason."""
    rejected_by_class: dict[str, int] = field(default_factory=dict)
    """``rejected`` by :func:`rejection_class` of the reason."""
    last_rejection: str = ""
    duplicates: int = 0
    """Records carrying a sample silver already had (same event_id)."""
    late_samples: int = 0
    """(sample, window) pairs that came after the window closed: in silver, not in gold."""
    next_offsets: dict[int, int] = field(default_factory=dict)
    """Partition of the metrics topic -> the offset after the highest one acknowledged:
    the end offset minus this is the partition's lag."""

    def count_rejection(self, reason: str) -> None:
        """One more record refused for ``reason``."""
        self.rejected += 1
        kind = rejection_class(reason)
        self.rejected_by_class[kind] = self.rejected_by_class.get(kind, 0) + 1

    def count_acknowledged(self, records: Iterable[_Positioned]) -> None:
        """Records every sink has flushed: counted, and their partitions' offsets noted."""
        offsets = self.next_offsets
        count = 0
        for record in records:
            count += 1
            if record.offset >= offsets.get(record.partition, 0):
                offsets[record.partition] = record.offset + 1
        self.acknowledged += count


REJECTION_CLASSES = (
    "not_json",
    "schema",
    "range",
    "timestamp",
    "identity",
    "key",
    "refused_by_postgres",
    "other",
)
"""What ``/metrics`` counts rejections by: few enough to alert on each."""

_FIELD = r"^[\w.\[\]]+"
"""A field's path as reasons name it: ``disks[0].percent``."""
_RANGE = re.compile(
    _FIELD
    + r"( = .* (is outside 0-100 percent|is negative|does not fit in 64 bits)$| must be finite$)"
)
_SCHEMA = re.compile(
    _FIELD + r" must be |^missing field |^unknown schema_version |^Expected |^Object "
)


def rejection_class(reason: str) -> str:
    """The class of a rejection reason (one of :data:`REJECTION_CLASSES`), from the words
    silver's rules use (schemas/validation.py, schemas/rows.py, agents/silver.py).
    Anchored at the start: a reason quotes values, which may hold any words."""
    if reason.startswith(("not JSON", "not a JSON object", "empty value")):
        return "not_json"
    if reason.startswith("PostgreSQL refused"):
        return "refused_by_postgres"
    if reason.startswith("record has "):
        return "key"
    if _RANGE.match(reason) or reason.startswith("disks: the sum of"):
        return "range"
    if _SCHEMA.match(reason):
        return "schema"
    if reason.startswith("timestamp "):
        return "timestamp"
    if reason.startswith(("event_id ", "host_id ", "hostname ")):
        return "identity"
    return "other"
