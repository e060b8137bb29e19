"""What a worker runs, imported explicitly: Faust's autodiscovery would log a module
that fails to import as a warning and start a worker without it."""

from agents.bronze import store_raw_records
from agents.gold import aggregate_windows, finalize_windows
from agents.silver import validate_samples
from app.seeking import seek_before_reading
from app.web import pipeline_stats

__all__ = [
    "aggregate_windows",
    "finalize_windows",
    "pipeline_stats",
    "seek_before_reading",
    "store_raw_records",
    "validate_samples",
]
