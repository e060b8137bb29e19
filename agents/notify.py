"""The Slack notifier: alert events from ``<topic>.alerts`` to a Slack webhook.

It reads the alerts topic with a consumer group of its own (``<app_id>-alerts``),
beside the pipeline in the same worker, and never holds the pipeline up: a webhook
down for an hour holds only this consumer, whose offsets wait until Slack took the
messages. An offset is committed once every event before it was posted, or dropped
as stale (old data, see schemas/alerts.py) or as a duplicate (an event derived again
after a crash: same ``event_id``). Ids are remembered for the dedupe window, and on
start the window's events before the committed offsets are read back to remember
them. A host gets at most one message per ``host_interval_s``; its events meanwhile
go together in the next one.

A group that has committed nothing on a partition starts there at the events produced
since the worker started, and commits that at once, so a new app id does not post
the topic's history, and a later owner of the partition goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas.alerts import AlertEvent, AlertStats, slack_message
from sinks.slack import SlackWebhook

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 1000
RESTART_AFTER_S = 10.0
"""Pause before the notifier starts again after an error it did not expect."""


@dataclass(eq=False)
class _Offset:
    offset: int
    done: bool = False
    """Posted, or dropped as stale, duplicate or unreadable."""


@dataclass(kw_only=True)
class PostAlerts(ConsumerRebalanceListener):
    """Posts each host's new alert events to Slack, rate-limited per host, committing an
    event's offset only once it is posted."""

    name: ClassVar[str] = "post_alerts"

    consumer: Callable[[], AIOKafkaConsumer]
    """Makes the notifier's consumer (its own group, no auto commit), in the running loop."""
    reader: Callable[[], AIOKafkaConsumer]
    """Makes a consumer without a group, to read back the dedupe window on start."""
    webhook: SlackWebhook
    topic: str
    """The alerts topic."""
    host_interval_s: float
    dedupe_window_s: float
    dashboard_url: str
    stats: AlertStats
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    """Events produced since are new to a group that has committed nothing."""
    _seen: dict[str, float] = field(default_factory=dict, init=False)
    """event_id -> when it was on the topic (epoch s)."""
    _offsets: dict[TopicPartition, deque[_Offset]] = field(default_factory=dict, init=False)
    _pending: dict[str, list[tuple[TopicPartition, _Offset, AlertEvent]]] = field(
        default_factory=dict, init=False
    )
    _posting: list[tuple[TopicPartition, _Offset, AlertEvent]] = field(
        default_factory=list, init=False
    )
    """The events of the message being posted."""
    _posted_at: dict[str, float] = field(default_factory=dict, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _committing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False)

    async def run(self) -> None:
        """Read and post until cancelled (the worker stops); after an error it did not
        expect, log it and start again from the committed offsets."""
        while True:
            try:
                await self._run_once()
            except Exception:
                log.exception("alerts notifier failed; starting again in %.0f s", RESTART_AFTER_S)
                await asyncio.sleep(RESTART_AFTER_S)

    async def _run_once(self) -> None:
        consumer = self._consumer = self.consumer()
        consumer.subscribe([self.topic], listener=self)
        poster = asyncio.create_task(self._post_due())
        try:
            await consumer.start()
            while True:
                fetched = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                for tp, records in fetched.items():
                    if tp in self._offsets:
                        for record in records:
                            self._take(tp, record)
                    elif tp in consumer.assignment():
                        # aiokafka fetches a partition as soon as it is assigned, before
                        # the listener set it up (its start, the ids to remember): read
                        # these again once it has.
                        consumer.seek(tp, records[0].offset)
                await self._commit_done()
                self._forget_old()
                if poster.done():
                    poster.result()  # raises what stopped it
        finally:
            poster.cancel()
            await asyncio.gather(poster, return_exceptions=True)
            self._offsets.clear()
            unposted = [*self._posting, *(item for w in self._pending.values() for item in w)]
            self._forget_unposted({tp for tp, *_ in unposted})
            self._posting = []
            await consumer.stop()

    def _take(self, tp: TopicPartition, record: Any) -> None:
        entry = _Offset(record.offset)
        self._offsets[tp].append(entry)
        try:
            event = AlertEvent.decode(record.value or b"")
        except ValueError as exc:
            log.warning(
                "alerts topic %s[%d]@%d skipped: %s", tp.topic, tp.partition, record.offset, exc
            )
            entry.done = True
            return
        first = event.event_id not in self._seen
        self._seen[event.event_id] = record.timestamp / 1000
        if event.stale or not first:
            entry.done = True
            return
        self._pending.setdefault(event.host_id, []).append((tp, entry, event))
        self._wake.set()

    async def _post_due(self) -> None:
        """Post each host's waiting events once its interval since the last message
        passed; the webhook's retries wait out an outage."""
        while True:
            self._wake.clear()
            now = time.monotonic()
            next_at = {
                host: self._posted_at.get(host, -math.inf) + self.host_interval_s
                for host, events in self._pending.items()
                if events
            }
            due = [host for host, at in next_at.items() if at <= now]
            if not due:
                wait = min(next_at.values(), default=now + 3600) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            for host in due:
                waiting = self._posting = self._pending.pop(host)
                await self.webhook.post(
                    slack_message(host, [event for *_, event in waiting], self.dashboard_url)
                )
                self._posting = []
                self.stats.messages_posted += 1
                self.stats.events_posted += len(waiting)
                self._posted_at[host] = time.monotonic()
                log.info("posted %d alert changes of %s to Slack", len(waiting), host)
                for _, entry, _ in waiting:
                    entry.done = True
                # At once, not with the next fetch: a worker killed in between posts
                # these again when it restarts.
                await self._commit_done()

    @property
    def waiting(self) -> int:
        """Events read and not yet taken by the webhook."""
        return len(self._posting) + sum(len(w) for w in self._pending.values())

    async def _commit_done(self) -> None:
        # One at a time (the reading loop and the poster both commit): offsets taken
        # off in order are committed in order, never an older one last.
        async with self._committing:
            assert self._consumer is not None
            commits = {}
            for tp, entries in self._offsets.items():
                last = None
                while entries and entries[0].done:
                    last = entries.popleft().offset
                if last is not None:
                    commits[tp] = last + 1
            if not commits:
                return
            try:
                await self._consumer.commit(commits)
            except (CommitFailedError, IllegalStateError):
                log.info("alerts: partitions moved before offsets %s were committed", commits)
            except KafkaError as exc:
                # Retried with the next commit: the offsets only move forward.
                log.warning("alerts: committing %s failed: %r", commits, exc)

    def _forget_old(self) -> None:
        horizon = time.time() - self.dedupe_window_s
        if len(self._seen) > 1000:
            self._seen = {key: at for key, at in self._seen.items() if at >= horizon}

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        starts = {}
        for tp in assigned:
            committed = await consumer.committed(tp)
            if committed is None:
                found = (await consumer.offsets_for_times({tp: self.started_ms}))[tp]
                committed = found.offset if found else (await consumer.end_offsets([tp]))[tp]
                consumer.seek(tp, committed)
                try:
                    await consumer.commit({tp: committed})
                except KafkaError as exc:
                    log.warning("alerts: could not commit the start of %s: %r", tp, exc)
            starts[tp] = committed
        remembered = await self._remember(starts)
        for tp in assigned:
            self._offsets[tp] = deque()
        log.info(
            "alerts: reading %s from %s; remembered %d recent event ids",
            self.topic,
            {tp.partition: offset for tp, offset in starts.items()},
            remembered,
        )

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Forget the partitions taken away: their new owner reads them from the commit."""
        gone = set(revoked)
        for tp in gone:
            self._offsets.pop(tp, None)
        self._forget_unposted(gone)

    def _forget_unposted(self, partitions: set[TopicPartition]) -> None:
        """Drop the events of ``partitions`` not posted yet, and their ids: they are read
        again from the committed offsets, and must not look like duplicates then. Those
        of a message being posted are forgotten too: it may not get through."""
        for tp, _, event in self._posting:
            if tp in partitions:
                self._seen.pop(event.event_id, None)
        for host, waiting in list(self._pending.items()):
            kept = []
            for tp, entry, event in waiting:
                if tp in partitions:
                    self._seen.pop(event.event_id, None)
                else:
                    kept.append((tp, entry, event))
            if kept:
                self._pending[host] = kept
            else:
                del self._pending[host]

    async def _remember(self, ends: dict[TopicPartition, int]) -> int:
        """Remember the ids of the events of the dedupe window before ``ends``; how many."""
        remembered = 0
        reader = self.reader()
        await reader.start()
        try:
            since_ms = int((time.time() - self.dedupe_window_s) * 1000)
            found = await reader.offsets_for_times({tp: since_ms for tp in ends})
            todo = {tp: end for tp, end in ends.items() if found[tp] and found[tp].offset < end}
            reader.assign(list(todo))
            for tp in todo:
                reader.seek(tp, found[tp].offset)
            while todo:
                for tp, records in (await reader.getmany(timeout_ms=POLL_TIMEOUT_MS)).items():
                    for record in records:
                        if record.offset < todo.get(tp, -1):
                            remembered += self._remember_one(record)
                for tp in [tp for tp, end in todo.items() if await reader.position(tp) >= end]:
                    del todo[tp]
        finally:
            await reader.stop()
        return remembered

    def _remember_one(self, record: Any) -> bool:
        """Remember ``record``'s event id; False for one that does not decode (logged when
        the notifier read it the first time)."""
        try:
            event = AlertEvent.decode(record.value or b"")
        except ValueError:
            return False
        self._seen[event.event_id] = record.timestamp / 1000
        return True
