"""Counters of what this worker did, served at ``/stats/`` and logged."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PipelineStats:
    """Totals since this worker started."""

    bronze_rows: int = 0
    """Rows new to bronze (a replayed record is not counted twice)."""
    silver_rows: int = 0
    """Rows new to silver (a duplicated sample is not counted twice)."""
    rejected: int = 0
    """Records silver refused; each is logged with its offset and reason."""
    last_rejection: str = ""


stats = PipelineStats()
