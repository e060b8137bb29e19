"""Pages of the worker's web server."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from app.core import app
from app.stats import stats


@app.page("/stats/")
async def pipeline_stats(web: Any, request: Any) -> Any:
    """What this worker wrote and rejected since it started, as JSON."""
    return web.json(asdict(stats))
