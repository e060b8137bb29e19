"""The API's token: ``HOSTSTREAM_WEB_TOKEN``, when set, guards every page but the probes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

import faust
from aiohttp import web as aiohttp_web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from web.auth import bearer_matches

OPEN_PATHS = frozenset({"/health", "/ready", "/api/ingest"})
"""Answered without the API's token: the probes, which must work for Kubernetes, and
ingest, which requires a token of its own (``HOSTSTREAM_INGEST_TOKEN``)."""

Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]


def require_token(app: faust.App, token: str) -> None:
    """Refuse (401) every request to ``app``'s web server that does not carry ``token``
    as its bearer, but those to :data:`OPEN_PATHS`; nothing when ``token`` is empty.

    A middleware of the whole aiohttp application, so Faust's own pages and any page
    added later are guarded too. The exact path is compared: ``/health/../api/hosts``
    is not ``/health``.
    """
    if not token:
        return

    @aiohttp_web.middleware
    async def check_token(
        request: aiohttp_web.Request, handler: Handler
    ) -> aiohttp_web.StreamResponse:
        if request.path in OPEN_PATHS or bearer_matches(
            request.headers.get("Authorization"), token
        ):
            return await handler(request)
        return aiohttp_web.json_response(
            {"error": "this page needs the API token (Authorization: Bearer ...)"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="hoststream"'},
        )

    cast(AiohttpWeb, app.web).web_app.middlewares.append(check_token)
