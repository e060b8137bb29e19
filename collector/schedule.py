"""When to take the next sample: on the wall clock's interval grid, so samples
from every host line up and a long run does not drift."""

from __future__ import annotations

import math


def next_tick(now_s: float, interval_s: float) -> float:
    """The first multiple of ``interval_s`` (epoch seconds) strictly after ``now_s``."""
    tick = (math.floor(now_s / interval_s) + 1) * interval_s
    # An interval that binary floating point cannot hold exactly (0.2) can round a
    # tick passed back in onto itself: the next one it is, or the loop samples twice.
    return tick if tick > now_s else tick + interval_s


def crossed(previous_s: float, now_s: float, every_s: float) -> bool:
    """Whether a multiple of ``every_s`` (epoch seconds) lies in (``previous_s``, ``now_s``]:
    something done at the first sample on or after each multiple keeps that grid."""
    return math.floor(now_s / every_s) > math.floor(previous_s / every_s)
