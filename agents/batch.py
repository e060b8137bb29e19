"""A batch of Kafka records on its way through bronze, silver and gold.

Only bronze consumes the Kafka topic. It hands each batch to silver, silver
to gold, over in-memory channels, and acknowledges the records (so Faust may
commit their offsets) only when ``done`` resolves: after every sink wrote them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from faust.streams import _current_event

from agents.events import kafka_origin
from schemas.rows import KafkaOrigin, SilverRow

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 70


@dataclass
class Batch:
    """Records of one ``noack_take`` batch and what the stages made of them."""

    events: list[Any]
    """Faust events, in the order they were read."""
    records: list[tuple[bytes | None, KafkaOrigin]]
    done: asyncio.Future[None]
    samples: list[SilverRow] = field(default_factory=list)
    """Silver rows gold aggregates: valid, and the first copy of each sample."""

    @classmethod
    def of(cls, events: list[Any]) -> Batch:
        return cls(
            events=events,
            records=[(e.value, kafka_origin(e)) for e in events],
            done=asyncio.get_running_loop().create_future(),
        )

    def last_event_of(self, partition: int) -> Any:
        """The batch's last event read from ``partition``."""
        for event in reversed(self.events):
            if event.message.partition == partition:
                return event
        raise KeyError(f"no event of partition {partition} in this batch")


@contextlib.contextmanager
def on_partition_of(event: Any) -> Iterator[None]:
    """Make Faust table reads and writes use the partition of ``event``.

    Faust picks the RocksDB partition a table reads and writes, and a write's
    changelog partition, from the event being processed. A batch has no single
    event, and gold runs on an in-memory channel's; this sets it explicitly.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def die(stage: str, exc: BaseException) -> None:
    """Exit at once, without committing: the next worker replays the batch.

    A graceful stop would commit the offsets Faust already holds, and sinks
    retry outages themselves, so an error here is one no retry fixes.
    """
    log.critical("%s failed on a batch; exiting so it is replayed: %r", stage, exc, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)
