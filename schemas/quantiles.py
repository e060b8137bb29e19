"""Percentiles for gold's windows: nearest rank, exact or from a mergeable sketch.

Percentiles use nearest rank: p95 of n values is the ceil(0.95 n)-th smallest.
The sketch keeps counts in logarithmic buckets (as DDSketch does), so its p95
is within 0.5 % of the exact value for values of at least
:data:`SKETCH_MIN_PERCENT`; smaller values fall in one zero bucket (absolute
error below that bound). Merging two sketches adds their counts: exact, so a
window's p95 is the same however its samples were batched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SKETCH_RELATIVE_ACCURACY = 0.005
SKETCH_MIN_PERCENT = 0.01
_GAMMA = (1 + SKETCH_RELATIVE_ACCURACY) / (1 - SKETCH_RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_ZERO_BUCKET = -(2**31)


def bucket(value: float) -> int:
    """The sketch bucket of a non-negative value."""
    if value < SKETCH_MIN_PERCENT:
        return _ZERO_BUCKET
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The value a bucket stands for: within the relative accuracy of all it holds."""
    if index == _ZERO_BUCKET:
        return 0.0
    return 2 * _GAMMA**index / (_GAMMA + 1)


def quantile(buckets: dict[int, int], q: float) -> float:
    """Nearest-rank quantile ``q`` (0-1] from bucket counts; 0.0 when empty."""
    total = sum(buckets.values())
    if total == 0:
        return 0.0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return bucket_value(index)
    raise AssertionError("unreachable: rank is at most the total count")


def exact_quantile(values: Iterable[float], q: float) -> float:
    """The exact nearest-rank quantile, the sketch's reference."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def merge_counts(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    """The counts of two sketches together."""
    merged = dict(a)
    for index, count in b.items():
        merged[index] = merged.get(index, 0) + count
    return merged
