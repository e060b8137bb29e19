"""Rates from monotonically increasing counters (bytes sent, packets, I/O operations).

Pure functions, so the edge cases are tested without a host: the first sample
has no previous value, clocks do not always move forward, and counters go
backwards when a host reboots, a 32-bit counter wraps or an interface is reset.
"""

from __future__ import annotations


def counter_rate(previous: int | None, current: int, elapsed_s: float) -> float:
    """Per-second rate of a counter between two readings ``elapsed_s`` seconds apart.

    Returns ``0.0`` when there is no previous reading, when no time passed, or
    when the counter went backwards: a reset is not traffic, and guessing the
    wrap point would invent a huge rate out of nothing.
    """
    if previous is None or elapsed_s <= 0 or current < previous:
        return 0.0
    return (current - previous) / elapsed_s


def counter_delta(previous: int | None, current: int) -> int:
    """Increase of a counter between two readings; 0 without a previous one or after a reset."""
    if previous is None or current < previous:
        return 0
    return current - previous
