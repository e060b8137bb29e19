"""The live dashboard: ``GET /`` serves its page and ``/static/`` its script, styles and
vendored charts (uPlot, see ``static/vendor/uplot/README.md``).

The page holds no data: its script reads the API (``/api/...``) and ``/metrics``, with
the API's token when one is set, so both are answered without the token
(:mod:`web.middleware`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import faust
from faust.web.drivers.aiohttp import Web as AiohttpWeb

STATIC_DIR = Path(__file__).parent / "static"
TOKEN_MARK = "__HOSTSTREAM_TOKEN_REQUIRED__"
"""Replaced in the page by ``true`` or ``false``: whether the API wants a token, so the
script asks for one before its first request instead of after a refusal, which the
browser would log as an error."""


PAGE_HEADERS = {
    # Always the current page after an upgrade; it is a few kB.
    "Cache-Control": "no-cache",
    # Only its own files, no inline script, no framing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}


def dashboard_page(token_required: bool) -> str:
    """The page's HTML, telling its script whether the API wants a token."""
    page = (STATIC_DIR / "index.html").read_text()
    return page.replace(TOKEN_MARK, "true" if token_required else "false")


def add_dashboard(app: faust.App, token_required: bool) -> None:
    """Serve the dashboard at ``/`` and its files under ``/static/``.

    Faust serves a status page of its own at ``/`` once its web server starts; this
    route, added before, is the one aiohttp resolves (routes of a path are tried in
    the order they were added).
    """
    page = dashboard_page(token_required)

    @app.page("/")
    async def dashboard(web: Any, request: Any) -> Any:
        return web.html(page, headers=PAGE_HEADERS)

    cast(AiohttpWeb, app.web).add_static("/static/", STATIC_DIR)
