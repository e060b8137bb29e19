"""The bronze stage: every record of the metrics topic, as received, into PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from runtime.batch import Batch
from schemas.rows import BronzeRow, bronze_row
from schemas.stats import PipelineStats
from sinks.base import Sink


class StoreRawRecords:
    """Writes each batch's records to ``bronze.bronze_performance``, as received.

    Runs first: a record silver rejects, or a worker crash after this write, still
    leaves the record here (a replay writes nothing twice).
    """

    name = "store_raw_records"

    def __init__(self, sink: Sink[BronzeRow], stats: PipelineStats) -> None:
        self.sink = sink
        self.stats = stats

    async def start(self) -> None:
        pass

    async def process(self, batch: Batch) -> None:
        ingested_at = datetime.now(UTC)
        before = self.sink.rows_written
        await self.sink.write([bronze_row(r, ingested_at) for r in batch.records])
        await self.sink.flush()
        self.stats.bronze_rows += self.sink.rows_written - before
