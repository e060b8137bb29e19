"""``/health`` and ``/ready``: the probes Kubernetes (or any supervisor) asks.

Both stay open when ``HOSTSTREAM_WEB_TOKEN`` is set: a probe carries no token.
"""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.tables.manager import TableManager


def not_ready_because(app: faust.App, topic: str) -> str | None:
    """Why the worker cannot process ``topic`` now, or None when it can: it owns some of
    its partitions and its tables are recovered."""
    if app.rebalancing:
        return "the consumer group is rebalancing"
    if not any(tp.topic == topic for tp in app.consumer.assignment()):
        return f"no partition of {topic} is assigned to this worker"
    if app.in_recovery or not cast(TableManager, app.tables).recovery.completed.is_set():
        return "tables are being recovered from their changelogs"
    return None


def add_probe_pages(app: faust.App, topic: str) -> None:
    """Serve ``/health`` (the process answers: 200) and ``/ready`` (200 once
    :func:`not_ready_because` finds nothing, else 503 saying why; either way with this
    worker's partitions and the group's :func:`workers`)."""

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "up"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        why = not_ready_because(app, topic)
        figures = {
            "worker": app.conf.canonical_url.human_repr().rstrip("/"),
            "partitions": sorted(
                tp.partition for tp in app.consumer.assignment() if tp.topic == topic
            ),
            "workers": workers(app),
        }
        if why is not None:
            return web.json({"ready": False, "why": why, **figures}, status=503)
        return web.json({"ready": True, **figures})


def workers(app: faust.App) -> dict[str, list[int]]:
    """The consumer group's workers (their web URLs) and the partitions each one
    processes, as the last rebalance assigned them (the table routing's map)."""
    return {
        url: sorted({p for partitions in topics.values() for p in partitions})
        for url, topics in sorted(app.router.tables_metadata().items())
    }
