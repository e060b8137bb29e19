"""The alerts stage: gold's closed 5-minute windows into alert events on ``<topic>.alerts``.

After gold, for each host whose state holds closed windows, the windows not judged yet
are judged in order (schemas/alerts.py); the events go to the alerts topic, keyed by
host, and the stage waits until Kafka has them before the host's state records them
and the batch goes on. So an event is in Kafka before the records that caused it are
committed, and a crash in between derives it again under the same ``event_id``, which
the notifier (agents/notify.py) posts once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import faust

from runtime.batch import Batch
from schemas.alerts import AlertStats, Judged, event_line, judge_closed
from schemas.anomalies import Thresholds
from schemas.windows import HostState
from tables.gold import HostStates

log = logging.getLogger(__name__)

LOGGED_EVENTS_PER_BATCH = 10


@dataclass(kw_only=True)
class RaiseAlerts:
    """Turns the anomaly flags of each host's closed 5-minute windows into firing and
    resolved events on the alerts topic: transitions only, never one per window."""

    name: ClassVar[str] = "raise_alerts"

    states: HostStates
    topic: faust.TopicT
    """``<topic>.alerts``: key host id, value :meth:`schemas.alerts.AlertEvent.encode`."""
    thresholds: Thresholds
    quiet_after_s: float
    """A window that ended longer ago than this (wall clock) is judged, but its events
    are marked stale: never posted."""
    stats: AlertStats

    async def start(self) -> None:
        pass

    async def process(self, batch: Batch) -> None:
        now_s = time.time()
        judged: list[tuple[str, int, HostState, Judged]] = []
        for host, partition in batch.closed_hosts.items():
            state = self.states.get(host, batch, partition)
            if state is None:  # forgotten by gold's expiry
                continue
            done = judge_closed(state, host, self.thresholds, now_s, self.quiet_after_s)
            if done is not None:
                judged.append((host, partition, state, done))
        events = [event for *_, done in judged for event in done.events]
        # Sent together, awaited together: a refusal fails the batch (the worker exits
        # and replays it), so an event is never lost behind a commit.
        await asyncio.gather(
            *[
                await self.topic.send(key=event.host_id.encode(), value=event.encode())
                for event in events
            ]
        )
        self.stats.count_raised(events)
        for n, event in enumerate(events):
            if n == LOGGED_EVENTS_PER_BATCH:
                log.info("%d more alert events in this batch", len(events) - n)
                break
            log.info(
                "alert %s%s: %s",
                event.host_id,
                " (stale)" if event.stale else "",
                event_line(event),
            )
        for _, _, state, done in judged:
            state.alerting, state.alerts_judged_s = done.alerting, done.judged_s
        await self.states.write(
            [(host, partition, state, batch) for host, partition, state, _ in judged]
        )
