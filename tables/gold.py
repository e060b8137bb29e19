"""Gold's state: one :class:`~schemas.windows.HostState` per host in a Faust table.

The table ``gold_hosts`` is keyed by host id and partitioned like the metrics
topic (a host's state lives with the worker that owns the host's partition); it
is stored in RocksDB (``HOSTSTREAM_STORE``) with a compacted Kafka changelog. The
gold stage works on a copy in memory and :class:`HostStates` writes each changed
host to the table once per checkpoint, as a sink: a host sending every 10 s
during a backlog read at 20,000 records/s changes many times between two
checkpoints, and only its last value needs to reach Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import faust
from faust.types import FutureMessage

from runtime.batch import Batch
from schemas.windows import HostState, decode_state, encode_state
from sinks.base import Sink

log = logging.getLogger(__name__)

HostUpdate = tuple[str, int, HostState | None, Batch]
"""(host id, its partition, its new state or None to forget the host, a batch with a
record of that partition: Faust takes a write's partition from an event)."""


class ChangelogAwaitedTable(faust.Table):
    """A table whose writes can be awaited until their changelog records are in Kafka.

    ``app.producer.flush()`` does not promise that: its buffer gives up after 0.1 s
    without a message sent, and a message taken off the buffer but not yet handed to
    aiokafka is not waited for. Each write's own future resolves when Kafka has
    acknowledged its record.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unacknowledged: list[FutureMessage] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        sent: FutureMessage = super().send_changelog(*args, **kwargs)
        self._unacknowledged.append(sent)
        return sent

    async def changelog_written(self) -> None:
        """Wait until Kafka holds the changelog records of every write made so far;
        raises if one could not be sent."""
        sent, self._unacknowledged = self._unacknowledged, []
        await asyncio.gather(*sent)


class HostStates(Sink[HostUpdate]):
    """The hosts' states: read through a copy in memory, written to the table at flush.

    The copy holds every host read or written since the last rebalance, which is the
    open state (a host's closed windows leave it once flushed, a quiet host's state
    once its retention passed). It is dropped whole at a rebalance, with the updates
    not flushed: the records behind them are read again.
    """

    def __init__(self, table: ChangelogAwaitedTable) -> None:
        self.table = table
        self._copy: dict[str, HostState | None] = {}
        self._unflushed: dict[str, tuple[int, HostState | None, Batch]] = {}

    @classmethod
    def add_to(cls, app: faust.App, partitions: int, store_options: dict[str, Any]) -> HostStates:
        table = ChangelogAwaitedTable(
            app,
            name="gold_hosts",
            beacon=app.tables.beacon,
            partitions=partitions,
            key_type=str,
            value_type=bytes,  # stored as is: schemas.windows encodes, and decodes on a miss
            options=store_options,
            # Compacted (Faust's default for a table) and rolled often, so the
            # broker's cleaner keeps about one record per host and a worker that
            # lost its disk restores in seconds, not by reading every write.
            extra_topic_configs={"segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1"},
        )
        app.tables.add(table)
        return cls(table)

    def get(self, host: str, batch: Batch, partition: int) -> HostState | None:
        """The state of ``host``, whose records are on ``partition`` of ``batch``."""
        try:
            return self._copy[host]
        except KeyError:
            with batch.on_partition(partition):
                raw = self.table.get(host)
            state = self._copy[host] = None if raw is None else decode_state(raw)
            return state

    def current(self, host: str) -> HostState | None:
        """The state of ``host`` as gold last merged it, read outside any event (for
        lookups): the copy's, else the table's, without adding it to the copy. Only the
        worker that owns (or stands by for) the host's partition holds it."""
        try:
            return self._copy[host]
        except KeyError:
            raw = self.table.get(host)
            return None if raw is None else decode_state(raw)

    def every(self) -> Iterator[tuple[str, HostState]]:
        """Every host's state: the copy's, else the table's (a scan of RocksDB)."""
        for host, state in list(self._copy.items()):
            if state is not None:
                yield host, state
        for key, raw in list(self.table.items()):
            host = key.decode() if isinstance(key, bytes) else key
            if host not in self._copy:
                yield host, decode_state(raw)

    async def write(self, rows: Sequence[HostUpdate]) -> None:
        for host, partition, state, batch in rows:
            self._copy[host] = state
            self._unflushed[host] = (partition, state, batch)

    async def flush(self) -> None:
        # Taken before the await: updates made meanwhile go with the next flush.
        updates, self._unflushed = self._unflushed, {}
        for host, (partition, state, batch) in updates.items():
            with batch.on_partition(partition):
                if state is None:
                    self.table.pop(host, None)
                else:
                    self.table[host] = encode_state(state)
        await self.table.changelog_written()
        self.rows_written += len(updates)

    async def discard(self) -> None:
        self._copy, self._unflushed = {}, {}

    async def close(self) -> None:
        await self.flush()
