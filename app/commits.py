"""Keeps offset commits moving when Faust's own bookkeeping loses acknowledgements.

Faust commits a partition only up to the first offset not yet acknowledged. A
race in its recovery (faust-streaming issue #596, open in 0.15.3) can process
and acknowledge records read before it seeks to the committed offsets, then
drop the records between: their offsets are never acknowledged, and commits for
that partition stop for good while processing goes on (seen here once in a few
restarts after a SIGKILL). Nothing is lost, since the next start replays from
the old offset, but the replay grows without bound.

This check notices a partition whose commits wait on a gap that has not moved
for a whole interval and makes the consumer read it again from the committed
offset. Reading again is always safe: every sink write is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from app.core import app

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 15.0

_stalled: dict[Any, tuple[int, int]] = {}


def stalled_gap(committed: int | None, acked: list[int]) -> tuple[int, int] | None:
    """The offsets [committed, first acknowledged) that hold a partition's commits back,
    or None when its commits can advance."""
    if committed is None or not acked:
        return None
    first = min(acked)
    return (committed, first) if first - committed > 1 else None


@app.timer(CHECK_INTERVAL_S)
async def reread_lost_offsets() -> None:
    """Seek back a partition whose commit gap stayed the same since the last check."""
    consumer: Any = app.consumer
    # Faust's private bookkeeping: there is no public view of acknowledged offsets.
    for tp in list(consumer.assignment()):
        gap = stalled_gap(consumer._committed_offset.get(tp), consumer._acked.get(tp, []))
        if gap is None or _stalled.get(tp) != gap:
            _stalled.pop(tp, None)
            if gap is not None:
                _stalled[tp] = gap
            continue
        del _stalled[tp]
        log.warning(
            "offsets %d-%d of %s[%d] were never acknowledged and hold its commits back "
            "(faust#596); reading them again from %d",
            gap[0],
            gap[1] - 1,
            tp.topic,
            tp.partition,
            gap[0],
        )
        await consumer.seek(tp, gap[0])
