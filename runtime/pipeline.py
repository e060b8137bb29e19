"""Stages run as Faust agents over in-memory channels, a batch at a time.

The consumer hands each fetch of the input topic to the pipeline as one
:class:`~runtime.batch.Batch` (runtime/consumer.py); the pipeline passes it through
the stages in order, each a Faust agent reading an in-memory channel, so Faust's
per-event cost is paid once per batch. A stage only processes a batch: it writes
through its sinks and never acknowledges anything. After the last stage the
batch goes to the :class:`~runtime.checkpoint.Checkpoint`, which acknowledges its
records once every sink has flushed them.

At a rebalance the batches in flight and those waiting for the checkpoint are
given up unacknowledged; the consumer reads them again from the committed
offsets, and every write is idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import faust
from mode.types.signals import BaseSignalT

from runtime.batch import Batch, die
from runtime.checkpoint import Checkpoint
from runtime.consumer import BatchingApp, Records, batching_consumer, deliver_in_batches
from runtime.seeking import seek_before_reading

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 3
"""Batches between the consumer and the last stage at once: bronze writes one while
silver and gold write the ones before it, so each stage's database round trips
overlap, and the consumer fetches no further ahead. Batches waiting for the
checkpoint are not counted."""

CHECKPOINT_TIMER_S = 1.0
"""How often the checkpoint is offered a commit when no batch comes to trigger one."""


class Stage(Protocol):
    """One step of the pipeline: what it does to a batch, and what it needs first."""

    name: ClassVar[str]
    """The Faust agent's name, as logs show it."""

    async def start(self) -> None:
        """Called once, in the worker's loop, before the stage's first batch."""

    async def process(self, batch: Batch) -> None:
        """Write what the stage makes of ``batch`` through its sinks. Raising fails the
        batch, and the worker exits without committing it (it is read again)."""


class Pipeline:
    """Stages wired to a topic, a checkpoint and the app's rebalances."""

    def __init__(
        self,
        app: BatchingApp,
        topic: faust.TopicT,
        stages: Sequence[Stage],
        checkpoint: Checkpoint,
        on_acknowledged: Callable[[Records], None],
    ) -> None:
        """Register everything with ``app``: call before the worker starts.

        ``on_acknowledged`` is given the records of each acknowledged batch: every
        sink has flushed what the stages made of them.
        """
        self.app = app
        self.checkpoint = checkpoint
        self._on_acknowledged = on_acknowledged
        self._room = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        self._in_flight: set[Batch] = set()
        self.records_in = {stage.name: 0 for stage in stages}
        """Stage name -> records of the batches it processed since the worker started."""
        channels = [app.channel() for _ in stages]
        self._first = channels[0]
        for n, stage in enumerate(stages):
            following = channels[n + 1] if n + 1 < len(stages) else None
            app.agent(channels[n], name=stage.name)(functools.partial(self._run, stage, following))
        deliver_in_batches(app, topic, self._hand_over)
        app.on_rebalance_complete.connect(self._abandon_in_flight)
        seek_before_reading(app)
        app.on_partitions_revoked.connect(self._drop_checkpoint)
        app.timer(CHECKPOINT_TIMER_S, name="checkpoint")(checkpoint.commit_if_due)

    async def _hand_over(self, records: Records) -> None:
        """Called by the consumer with each fetch; waits while the pipeline is full."""
        await self._room.acquire()
        batch = Batch.of(records, self._room, batching_consumer(self.app))
        batch.done.add_done_callback(functools.partial(self._acknowledge, batch))
        self._in_flight.add(batch)
        try:
            await self._first.send(value=batch)
        except BaseException:
            batch.abandon()
            raise

    async def _run(self, stage: Stage, following: faust.ChannelT | None, batches: Any) -> None:
        """The agent of ``stage``: each batch processed, then passed on or checkpointed."""
        await stage.start()
        async for batch in batches:
            if batch.abandoned:
                continue
            try:
                await stage.process(batch)
            except Exception as exc:
                die(stage.name, exc)
            self.records_in[stage.name] += len(batch.records)
            if following is not None:
                await following.send(value=batch)
                continue
            batch.drop_payloads()
            self.checkpoint.add(batch)
            batch.free_room()
            await self.checkpoint.commit_if_due()

    def _acknowledge(self, batch: Batch, done: asyncio.Future[None]) -> None:
        self._in_flight.discard(batch)
        batch.free_room()
        if batch.abandoned:
            return
        failure = done.exception()
        if failure is not None:
            die("the checkpoint's flush", failure)
        batching_consumer(self.app).acknowledge(batch.records)
        self._on_acknowledged(batch.records)

    async def _abandon_in_flight(
        self, sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any
    ) -> None:
        """Give up the batches still in flight when partitions move.

        Faust empties the agents' queues when it resumes after a rebalance, so a
        batch waiting in one would never finish and its room in the pipeline would
        be lost for good.
        """
        if self._in_flight:
            log.warning("rebalance: %d batches in flight will be read again", len(self._in_flight))
        for batch in list(self._in_flight):
            batch.abandon()
        # Stages may have written batches between the revocation and now: what the
        # sinks hold of them is dropped too, or a state or row of a partition now
        # another worker's could be flushed over its newer one.
        await self.checkpoint.drop()

    async def _drop_checkpoint(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        """Drop what waits for the checkpoint before another worker takes the partitions."""
        await self.checkpoint.drop()
