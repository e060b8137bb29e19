"""The API's token: ``HOSTSTREAM_WEB_TOKEN``, when set, guards every page but the probes
and the dashboard's files."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

import faust
from aiohttp import web as aiohttp_web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from web.auth import bearer_matches

OPEN_PATHS = frozenset({"/health", "/ready", "/api/ingest", "/"})
"""Answered without the API's token: the probes, which must work for Kubernetes,
ingest, which requires a token of its own (``HOSTSTREAM_INGEST_TOKEN``), and the
dashboard's page, which holds no data (its script asks the API with the token)."""
STATIC_PREFIX = "/static/"
"""The dashboard's script, styles and vendored charts: open like its page."""

Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]


def is_open(path: str) -> bool:
    """Whether ``path`` (decoded, as aiohttp routes it) is answered without the token.

    Exact paths are compared, and a path under :data:`STATIC_PREFIX` is open only
    without a ``.`` or ``..`` segment: ``/health/../api/hosts`` is not ``/health``, and
    ``/static/../api/hosts`` is not a static file, whatever a server makes of the dots.
    """
    if path in OPEN_PATHS:
        return True
    if not path.startswith(STATIC_PREFIX):
        return False
    return not any(part in {".", ".."} for part in path.split("/"))


def require_token(app: faust.App, token: str) -> None:
    """Refuse (401) every request to ``app``'s web server that does not carry ``token``
    as its bearer, but those :func:`is_open` lets through; nothing when ``token`` is
    empty.

    A middleware of the whole aiohttp application, so Faust's own pages and any page
    added later are guarded too.
    """
    if not token:
        return

    @aiohttp_web.middleware
    async def check_token(
        request: aiohttp_web.Request, handler: Handler
    ) -> aiohttp_web.StreamResponse:
        if is_open(request.path) or bearer_matches(request.headers.get("Authorization"), token):
            return await handler(request)
        return aiohttp_web.json_response(
            {"error": "this page needs the API token (Authorization: Bearer ...)"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="hoststream"'},
        )

    cast(AiohttpWeb, app.web).web_app.middlewares.append(check_token)
