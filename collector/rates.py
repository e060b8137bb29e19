"""Rates from monotonically increasing counters (bytes sent, packets, I/O operations, CPU ticks).

Pure functions, so the edge cases are tested without a host: the first sample
has no previous value, clocks do not always move forward, and counters go
backwards when a host reboots, a 32-bit counter wraps or an interface is reset.
"""

from __future__ import annotations

from collections.abc import Sequence


def counter_rates(
    previous: Sequence[int] | None, current: Sequence[int], elapsed_s: float
) -> list[float]:
    """Per-second rate of each position of two readings of a counter tuple taken
    ``elapsed_s`` seconds apart (psutil's named tuples: bytes, packets, errors...).

    A rate is ``0.0`` when there is no previous reading, when no time passed, or
    when its counter went backwards: a reset is not traffic, and guessing the
    wrap point would invent a huge rate out of nothing.
    """
    if previous is None or elapsed_s <= 0:
        return [0.0] * len(current)
    return [(c - p) / elapsed_s if c >= p else 0.0 for p, c in zip(previous, current, strict=True)]


def counter_rate(previous: int | None, current: int, elapsed_s: float) -> float:
    """:func:`counter_rates` of a single counter."""
    return counter_rates(None if previous is None else (previous,), (current,), elapsed_s)[0]


def counter_delta(previous: int | None, current: int) -> int:
    """Increase of a counter between two readings; 0 without a previous one or after a reset."""
    if previous is None or current < previous:
        return 0
    return current - previous


def busy_percent(previous_ms: int | None, current_ms: int, elapsed_s: float) -> float:
    """Share of ``elapsed_s`` a device was busy, percent 0-100, from a busy-time counter in ms.

    Clamped at 100: the kernel accounts busy time when I/O completes, so one
    interval can be credited a little more than it lasted.
    """
    return min(100.0, counter_rate(previous_ms, current_ms, elapsed_s) / 10.0)


def time_shares(previous: Sequence[float], current: Sequence[float]) -> list[float] | None:
    """Share of each CPU-time field in the time passed between two readings, percent 0-100.

    ``None`` when no CPU time passed (two readings in the same clock tick, or a
    reset): there is nothing to divide. A field that went backwards counts as 0.
    """
    deltas = [c - p if c > p else 0 for p, c in zip(previous, current, strict=True)]
    total = sum(deltas)
    if total <= 0:
        return None
    return [min(100.0, 100.0 * delta / total) for delta in deltas]


def busy_share(shares: Sequence[float] | None, idle: Sequence[int]) -> float:
    """CPU busy percent 0-100 from :func:`time_shares`: all but the shares at the
    positions ``idle`` (idle, and waiting for I/O).

    ``0.0`` for ``None`` shares, when no CPU time passed: no tick is no evidence
    of work, and reading it as "not idle" would report a busy CPU.
    """
    if shares is None:
        return 0.0
    return max(0.0, min(100.0, 100.0 - sum(shares[i] for i in idle)))
