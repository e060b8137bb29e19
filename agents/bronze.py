"""The bronze stage: every record of the metrics topic, as received, into PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from runtime.batch import Batch
from schemas.rows import BronzeRow, bronze_row
from schemas.stats import PipelineStats
from sinks.base import Sink


@dataclass
class StoreRawRecords:
    """Writes each batch's records to ``bronze.bronze_performance``, as received.

    Runs first: a record silver rejects, or a worker crash after this write, still
    leaves the record here (a replay writes nothing twice).
    """

    name: ClassVar[str] = "store_raw_records"

    sink: Sink[BronzeRow]
    stats: PipelineStats

    async def start(self) -> None:
        pass

    async def process(self, batch: Batch) -> None:
        ingested_at = datetime.now(UTC)
        before = self.sink.rows_written
        await self.sink.write([bronze_row(r, ingested_at) for r in batch.records])
        await self.sink.flush()
        self.stats.bronze_rows += self.sink.rows_written - before
