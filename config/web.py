"""The worker's web server: the API's tokens and limits, and HTTP ingest
(web/ has the routes, app/worker.py wires them)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from config.common import CommonSettings


class WebSettings(CommonSettings):
    """Settings of the worker's API and ingest; a base of
    :class:`config.worker.WorkerSettings`."""

    web_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token the API requires on every page but /health and /ready. "
        "Empty: the API is open to whoever reaches web_host.",
    )
    ingest_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token POST /api/ingest requires. Empty: HTTP ingest is off.",
    )
    ingest_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest body POST /api/ingest accepts; a larger one gets 413.",
    )
    api_max_range_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="Longest from-to range a windows lookup may ask for; a longer one gets 400.",
    )
