"""Counters of what this worker did, served at ``/stats/``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PipelineStats:
    """Totals since this worker started."""

    processed: int = 0
    """Records every stage has processed: gold's state holds their samples."""
    acknowledged: int = 0
    """Records every sink has flushed, so Faust may commit their offsets."""
    bronze_rows: int = 0
    """Rows new to bronze (a replayed record is not counted twice)."""
    silver_rows: int = 0
    """Rows new to silver (a duplicated sample is not counted twice)."""
    rejected: int = 0
    """Records silver refused; each is logged with its offset and reason."""
    last_rejection: str = ""
    duplicates: int = 0
    """Records carrying a sample silver already had (same event_id)."""
    late_samples: int = 0
    """(sample, window) pairs that came after the window closed: in silver, not in gold."""
