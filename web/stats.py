"""Pages of the worker's web server."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from app.core import app
from app.stats import stats
from sinks.postgres import waiting_for_postgres


@app.page("/stats/")
async def pipeline_stats(web: Any, request: Any) -> Any:
    """What this worker wrote and rejected since it started, as JSON.

    ``waiting_for`` is null, or the outage the worker is waiting out: the service,
    what failed first, the error, since when (UTC) and for how long (``waited_s``).
    """
    waiting = waiting_for_postgres()
    return web.json({**asdict(stats), "waiting_for": waiting and waiting.as_json()})
