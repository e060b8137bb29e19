"""``/stats/``: what this worker wrote and rejected since it started."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust


def add_stats_page(app: faust.App, figures: Callable[[], dict[str, Any]]) -> None:
    """Serve ``figures()`` as JSON at ``/stats/``."""

    @app.page("/stats/")
    async def pipeline_stats(web: Any, request: Any) -> Any:
        return web.json(figures())
