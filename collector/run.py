"""The collector loop: sample on the interval grid into the spool; send the spool in order.

Two tasks share the spool. Sampling never waits for Kafka, so an outage costs
no sample; delivery takes the oldest samples, sends them and removes each one
only once the broker has acknowledged it. A send is never abandoned: while
Kafka is away the oldest samples stay queued in the idempotent producer, which
delivers them (once) when the broker returns, and everything newer waits on
disk behind them. That is what keeps every sample exactly once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from collector.publisher import Publisher
from collector.sampler import Sampler
from collector.schedule import next_tick
from collector.spool import Spool
from schemas.metrics import CollectorStatus, to_json

log = logging.getLogger("hoststream.collect")

SEND_BATCH = 200
"""Most samples in flight at once: one request's worth when a spool drains."""
STALL_S = 5.0
"""A sample unacknowledged this long means the broker is away: say so, once."""
RETRY_S = 1.0
"""Pause before sending again after Kafka refused or failed a send."""
STOP_GRACE_S = 5.0
"""On a stop signal, how long the spool may keep draining before the collector exits."""


class Delivery:
    """Sends the spool to Kafka, oldest first.

    Logs one line when Kafka stops acknowledging and one when it returns.
    """

    def __init__(self, spool: Spool, publisher: Publisher, key: bytes, stall_s: float = STALL_S):
        self.spool = spool
        self.publisher = publisher
        self.key = key
        self.stall_s = stall_s
        self.sent = 0
        self.wake = asyncio.Event()
        self._away_since: float | None = None
        self._batch_started = time.monotonic()
        self._empty = asyncio.Event()

    def added(self) -> None:
        """A sample joined the spool: send it."""
        self._empty.clear()
        self.wake.set()

    async def run(self) -> None:
        """Deliver forever; cancel to stop (samples not yet acknowledged stay in the spool)."""
        while True:
            self.wake.clear()
            batch = self.spool.oldest(SEND_BATCH)
            if not batch:
                self._empty.set()
                await self.wake.wait()
                continue
            error = await self._send(batch)
            self.spool.release()
            if error is not None:
                self._went_away(error)
                await asyncio.sleep(RETRY_S)
            elif self._away_since is not None:
                log.warning(
                    "Kafka at %s acknowledges samples again (away %.0f s); %d spooled "
                    "samples left to send, oldest first",
                    self.publisher.servers,
                    time.monotonic() - self._away_since,
                    len(self.spool),
                )
                self._away_since = None

    async def drained(self, timeout_s: float | None = None) -> bool:
        """Wait until the spool is empty (``timeout_s``: at most that long); whether it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        return not len(self.spool)

    async def _send(self, batch: list[tuple[int, bytes]]) -> BaseException | None:
        error: BaseException | None = None
        self._batch_started = time.monotonic()
        queued = []
        for number, payload in batch:
            try:
                queued.append((number, await self.publisher.send(payload, self.key)))
            except MessageSizeTooLargeError as exc:
                # Retrying cannot help a record the broker will always refuse.
                log.error("sample %d is too large for Kafka and is dropped: %s", number, exc)
                self.spool.remove(number)
            except KafkaError as exc:
                error = exc
                break
        # Wait for every queued send, even after a failure: each may still be
        # delivered, and sending it again from the spool would duplicate it.
        for number, future in queued:
            try:
                await self._acknowledged(future)
            except KafkaError as exc:
                error = error or exc
                continue
            self.spool.remove(number)
            self.sent += 1
        return error

    async def _acknowledged(self, future: asyncio.Future[object]) -> None:
        # asyncio.wait leaves the future running on a timeout: no shield, no task.
        while not future.done():
            await asyncio.wait((future,), timeout=self.stall_s)
            if not future.done():
                self._went_away(None)
        future.result()

    def _went_away(self, error: BaseException | None) -> None:
        if self._away_since is not None:
            return
        # The outage began when the send that is still waiting was made.
        self._away_since = self._batch_started
        cause = f"{type(error).__name__}: {error}" if error else f"no answer for {self.stall_s:g} s"
        log.error(
            "Kafka at %s stopped acknowledging samples (%s); they wait in the spool %s "
            "and are sent in order when it returns",
            self.publisher.servers,
            cause,
            self.spool.directory,
        )


async def collect(
    sampler: Sampler,
    publisher: Publisher,
    spool: Spool,
    count: int | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Sample every ``sampler.interval_s`` seconds on the wall-clock grid into ``spool``
    while delivering it; returns the number of samples Kafka acknowledged.

    Ends after ``count`` samples once all are acknowledged, or when ``stop`` is
    set, after at most :data:`STOP_GRACE_S` more of draining; what is left
    stays in the spool for the next run.
    """
    stop = stop or asyncio.Event()
    delivery = Delivery(spool, publisher, sampler.host_id.encode())
    if len(spool):
        log.info(
            "%d samples spooled by a previous run wait in %s: sending them first",
            len(spool),
            spool.directory,
        )
    sender = asyncio.create_task(delivery.run())
    # One waiter for the whole run: waiting on it with a timeout creates no task a tick.
    stopped = asyncio.ensure_future(stop.wait())
    try:
        taken = 0
        while (count is None or taken < count) and not stop.is_set():
            delay = next_tick(time.time(), sampler.interval_s) - time.time()
            await asyncio.wait((stopped,), timeout=max(0.0, delay))
            if stop.is_set():
                break
            status = CollectorStatus(spooled_samples=len(spool), dropped_samples=spool.dropped)
            spool.append(to_json(sampler.sample(status=status)))
            taken += 1
            delivery.added()
        if stop.is_set():
            await delivery.drained(STOP_GRACE_S)
        else:
            await _drained_or_stopped(delivery, stop)
    finally:
        stopped.cancel()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    if len(spool):
        log.warning("%d samples stay in the spool %s for the next run", len(spool), spool.directory)
    return delivery.sent


async def _drained_or_stopped(delivery: Delivery, stop: asyncio.Event) -> None:
    drained = asyncio.ensure_future(delivery.drained())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({drained, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if stopped.done() and not drained.done():
        # A stop signal while waiting for the last acknowledgements: a short grace only.
        drained.cancel()
        await delivery.drained(STOP_GRACE_S)
    for task in (drained, stopped):
        task.cancel()
