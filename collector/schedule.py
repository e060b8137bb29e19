"""When to take the next sample: on the wall clock's interval grid, so samples
from every host line up and a long run does not drift."""

from __future__ import annotations

import math


def next_tick(now_s: float, interval_s: float) -> float:
    """The first multiple of ``interval_s`` (epoch seconds) strictly after ``now_s``."""
    return (math.floor(now_s / interval_s) + 1) * interval_s
