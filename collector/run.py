"""The collector loop: sample on the interval grid into the spool; send the spool in order.

Two tasks share the spool. Sampling never waits for Kafka, so an outage costs
no sample; delivery takes the oldest samples, sends them (together, at most
every :data:`SEND_EVERY_S`) and removes each one only once the broker has
acknowledged it. A send is never abandoned: while
Kafka is away the oldest samples stay queued in the idempotent producer, which
delivers them (once) when the broker returns, and everything newer waits on
disk behind them. That is what keeps every sample exactly once and in order.
The one sample never sent is one Kafka refuses as too large (or the HTTP ingest,
when the collector sends through a worker, refuses as invalid or too large): it is
dropped and counted with those a full spool dropped, so it cannot hold up the rest.

Either task dying (a bug, a spool file damaged under it, a full disk) ends the
collector at once with one line naming the cause, rather than a collector that
samples into a spool nothing sends, or sends with nothing new to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable
from pathlib import Path

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from collector.publisher import BrokerUnreachable, SampleRefused, Sender
from collector.sampler import Sampler
from collector.schedule import crossed, next_tick
from collector.spool import Spool
from schemas.metrics import to_json

log = logging.getLogger("hoststream.collect")

SEND_BATCH = 100
"""Most samples in flight at once: when a spool drains, about 280 kB a request, which
the producer holds (twice, compressed) until the broker acknowledges it."""
SEND_EVERY_S = 5.0
"""Samples taken faster than this go to Kafka together, at the first sample on each
multiple of it: a request costs the collector more CPU than taking a sample does
(0.8 ms against 0.5 on a 2-core VM), so at a 1 s interval one request per five
samples takes a third off its CPU. A sample waits less than this plus one
interval before it is sent; at the default 10 s interval each goes at once."""
STALL_S = 5.0
"""A sample unacknowledged this long means the broker is away: say so, once."""
RETRY_S = 1.0
"""Pause before sending again after Kafka refused or failed a send."""
STOP_GRACE_S = 5.0
"""On a stop signal, how long the spool may keep draining before the collector exits."""


_REFUSED_FOR_GOOD = (MessageSizeTooLargeError, SampleRefused)
"""A sample whose send failed with one of these is dropped, not sent again."""


class CollectorDied(SystemExit):
    """Sampling or delivery died: the process exits with status 1 and this one line.

    The collector exits rather than restarting the task, as the worker does for
    a bug: a task that died of a bug or a damaged spool would most likely die
    again, each time with the in-memory state of the last one, while sampling
    went on filling the spool unseen. A fresh process rebuilds everything from
    the files (cutting a damaged record off, and saying so), its supervisor
    (systemd's ``Restart=on-failure``) shows and counts the failure, and the
    samples wait in the spool meanwhile. A ``SystemExit`` so that no ``except
    Exception`` on the way out can take it for an error to handle; hence
    :func:`collect` is awaited in the main task, not run as a task of its own:
    a ``SystemExit`` that leaves a task stops the event loop.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(1)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class Delivery:
    """Sends the spool to Kafka, oldest first, when told a send is due.

    Logs one line when Kafka stops acknowledging and one when it returns.
    """

    def __init__(self, spool: Spool, publisher: Sender, key: bytes, stall_s: float = STALL_S):
        self.spool = spool
        self.publisher = publisher
        self.key = key
        self.stall_s = stall_s
        self.sent = 0
        self._due = asyncio.Event()
        self._flushing = False
        self._away_since: float | None = None
        self._batch_started = time.monotonic()
        self._empty = asyncio.Event()
        # Samples up to this number go one per request: the broker refused a request
        # holding one of them as too large, and only a request of its own shows which.
        self._one_by_one_until = -1
        self._renew_producer = False

    def queued(self, send_now: bool) -> None:
        """Samples wait in the spool; ``send_now``: send them now rather than with a
        later sample (a full batch goes at once regardless)."""
        self._empty.clear()
        if send_now or len(self.spool) >= SEND_BATCH:
            self._due.set()

    def flush(self) -> None:
        """No more samples: send everything that waits, and whatever joins later, now."""
        self._flushing = True
        self._due.set()

    async def run(self) -> None:
        """Deliver forever; cancel to stop (samples not yet acknowledged stay in the spool)."""
        while True:
            await self._due.wait()
            self._due.clear()
            # Full batches go at once, one after the other (a spool draining after
            # an outage); a partial one waits for the next send that is due.
            while batch := self.spool.oldest(SEND_BATCH):
                if batch[0][0] <= self._one_by_one_until:
                    batch = batch[:1]
                error = await self._renewed() if self._renew_producer else None
                if error is None:
                    error = await self._send(batch)
                self.spool.release()
                if error is not None:
                    self._went_away(error)
                    await asyncio.sleep(RETRY_S)
                    continue
                if self._away_since is not None:
                    log.warning(
                        "%s acknowledges samples again (away %.0f s); %d spooled "
                        "samples left to send, oldest first",
                        self.publisher.where,
                        time.monotonic() - self._away_since,
                        len(self.spool),
                    )
                    self._away_since = None
                # Samples refused along with a large one go again at once.
                refusals_left = self._renew_producer or batch[-1][0] < self._one_by_one_until
                if len(self.spool) < SEND_BATCH and not self._flushing and not refusals_left:
                    break
            if not len(self.spool):
                self._empty.set()

    async def drained(self, timeout_s: float | None = None) -> bool:
        """Wait until the spool is empty (``timeout_s``: at most that long); whether it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        return not len(self.spool)

    async def _renewed(self) -> BaseException | None:
        try:
            await self.publisher.restart()
        except BrokerUnreachable as exc:
            return exc
        self._renew_producer = False
        return None

    async def _send(self, batch: list[tuple[int, bytes]]) -> BaseException | None:
        error: BaseException | None = None
        self._batch_started = time.monotonic()
        queued = []
        for number, payload in batch:
            try:
                queued.append((number, len(payload), await self.publisher.send(payload, self.key)))
            except MessageSizeTooLargeError as exc:
                # aiokafka's own limit (max_request_size): the record was never queued.
                self._drop(number, len(payload), exc)
            except KafkaError as exc:
                error = exc
                break
        # Wait for every queued send, even after a failure: each may still be
        # delivered, and sending it again from the spool would duplicate it.
        await self._acknowledged([future for *_, future in queued])
        acknowledged = []
        failed: dict[int, BaseException] = {}
        for number, _, future in queued:
            failure = future.exception()
            if failure is None:
                acknowledged.append(number)
            else:
                failed[number] = failure
        self.spool.done(acknowledged)
        self.sent += len(acknowledged)
        if not failed:
            return error
        # The producer numbered records the broker never wrote, and would see every
        # later one refused as out of sequence. Nothing is in flight now: a new
        # producer id duplicates nothing.
        self._renew_producer = True
        too_large = [n for n, exc in failed.items() if isinstance(exc, _REFUSED_FOR_GOOD)]
        if not too_large:
            return error or next(iter(failed.values()))
        # The records refused behind the large one are no outage: they go again.
        if len(queued) == 1:
            number, size, _ = queued[0]
            self._drop(number, size, failed[number])
        else:
            self._one_by_one_until = max(too_large)
        return error

    def _drop(self, number: int, size: int, error: BaseException) -> None:
        # Retrying cannot help a record the broker will always refuse, and it would
        # hold up every sample behind it.
        self.spool.refused(number)
        why = (
            f"is refused by {self.publisher.where} and is dropped ({error})"
            if isinstance(error, SampleRefused)
            else f"is too large for Kafka and is dropped ({type(error).__name__})"
        )
        log.error(
            "sample %d (%d bytes) %s; %d samples dropped so far, each sample reports the count",
            number,
            size,
            why,
            self.spool.dropped,
        )

    async def _acknowledged(self, futures: list[asyncio.Future[object]]) -> None:
        # asyncio.wait leaves the futures running on a timeout: no shield, no task.
        pending = set(futures)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=self.stall_s)
            if pending:
                self._went_away(None)

    def _went_away(self, error: BaseException | None) -> None:
        if self._away_since is not None:
            return
        # The outage began when the send that is still waiting was made.
        self._away_since = self._batch_started
        cause = f"{type(error).__name__}: {error}" if error else f"no answer for {self.stall_s:g} s"
        log.error(
            "%s stopped acknowledging samples (%s); they wait in the spool %s "
            "and are sent in order when it returns",
            self.publisher.where,
            cause,
            self.spool.directory,
        )


async def collect(
    sampler: Sampler,
    publisher: Sender,
    spool: Spool,
    count: int | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Sample every ``sampler.interval_s`` seconds on the wall-clock grid into ``spool``
    while delivering it; returns the number of samples Kafka acknowledged.

    Ends after ``count`` samples once all are acknowledged, or when ``stop`` is
    set, after at most :data:`STOP_GRACE_S` more of draining; what is left
    stays in the spool for the next run. Raises :class:`CollectorDied` (and logs
    its one line) as soon as sampling or delivery dies of an error.
    """
    stop = stop or asyncio.Event()
    delivery = Delivery(spool, publisher, sampler.host_id.encode())
    if len(spool):
        log.info(
            "%d samples spooled by a previous run wait in %s: sending them first",
            len(spool),
            spool.directory,
        )
        delivery.queued(send_now=True)
    sender = asyncio.create_task(delivery.run(), name="delivery to Kafka")
    sampling = asyncio.create_task(
        _sample_on_ticks(sampler, spool, delivery, count), name="sampling"
    )
    try:
        await _until((sampling, sender), spool, stop.wait())
        # Sampling only ever waits in its sleep: a cancelled one has no sample half taken.
        sampling.cancel()
        delivery.flush()
        if not stop.is_set():
            await _until((sender,), spool, delivery.drained(), stop.wait())
        if stop.is_set():
            # A stop signal, also while waiting for the last acknowledgements: a short
            # grace only.
            await _until((sender,), spool, delivery.drained(STOP_GRACE_S))
    finally:
        for task in (sampling, sender):
            task.cancel()
        await asyncio.wait((sampling, sender))
    if len(spool):
        log.warning("%d samples stay in the spool %s for the next run", len(spool), spool.directory)
    return delivery.sent


async def _until(
    tasks: tuple[asyncio.Task[None], ...], spool: Spool, *waits: Awaitable[object]
) -> None:
    """Wait for the first of ``tasks`` to end or the first of ``waits`` to be done;
    raises :class:`CollectorDied` (logged) if one of ``tasks`` died."""
    waiting = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait((*tasks, *waiting), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waiting:
            future.cancel()
    for task in tasks:
        error = None if not task.done() or task.cancelled() else task.exception()
        if error is not None:
            died = CollectorDied(
                f"the collector stops: {task.get_name()} died of {_cause(error)}; "
                f"{len(spool)} samples stay in the spool {spool.directory} for the next run"
            )
            log.critical("%s", died)
            raise died


def _cause(error: BaseException) -> str:
    """The error on one line, with where it was raised (a bug is found from that)."""
    cause = f"{type(error).__name__}: {' '.join(str(error).split())}"
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return cause
    return f"{cause} (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})"


async def _sample_on_ticks(
    sampler: Sampler, spool: Spool, delivery: Delivery, count: int | None
) -> None:
    taken = 0
    tick = 0.0  # the epoch: the first sample is sent at once
    while count is None or taken < count:
        # Never the same tick twice, even when the timer fires a little early.
        previous, tick = tick, next_tick(max(time.time(), tick), sampler.interval_s)
        await asyncio.sleep(tick - time.time())
        spool.append(to_json(sampler.sample(status=(len(spool), spool.dropped))))
        taken += 1
        delivery.queued(send_now=crossed(previous, tick, SEND_EVERY_S))
