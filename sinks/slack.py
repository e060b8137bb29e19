"""Slack incoming webhooks: post a message, retrying until Slack takes it.

The webhook URL is a secret (whoever holds it may post to the channel): it is never
logged, nor any error text that holds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 600.0
"""A 429's Retry-After is honoured up to this: a broken proxy's "one day" is not."""
TEXT_MAX_CHARS = 3000
"""What a message refused as malformed is cut to, sent as text alone."""


class WebhookFailed(Exception):
    """Slack did not take a message within the attempts allowed; the reason, without the
    URL."""


class SlackWebhook:
    """One incoming webhook. :meth:`post` waits out an outage (backoff from 1 s doubling
    to 60 s, or Slack's ``Retry-After`` on 429): a webhook down delays, never drops."""

    def __init__(
        self,
        url: str,
        timeout_s: float = REQUEST_TIMEOUT_S,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self._url = url
        self.timeout_s = timeout_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self._session: aiohttp.ClientSession | None = None
        self.failing_since: float | None = None
        """``time.monotonic()`` of the first failed attempt since a message was last taken;
        None while the webhook takes them."""

    async def post(self, message: dict[str, Any], attempts: int | None = None) -> None:
        """Post ``message`` (Slack's webhook JSON: ``text``, ``blocks``); retry until it
        is taken, or raise :class:`WebhookFailed` after ``attempts`` (None: never).

        A message Slack refuses as malformed (400: ``invalid_blocks``, a block too long)
        would be refused for ever: it goes again at once as its ``text`` alone, cut to
        what Slack takes, so one odd message cannot hold up every later one.
        """
        backoff = self.first_backoff_s
        attempt = 0
        while True:
            attempt += 1
            failure, retry_after, malformed = await self._try(message)
            if failure is None:
                self.failing_since = None
                return
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            if attempts is not None and attempt >= attempts:
                raise WebhookFailed(failure)
            if malformed and set(message) != {"text"}:
                log.warning("Slack webhook refused a message (%s); sending its text alone", failure)
                message = {"text": str(message.get("text", ""))[:TEXT_MAX_CHARS]}
                continue
            wait = retry_after if retry_after is not None else backoff
            log.warning(
                "Slack webhook: attempt %d failed (%s); retrying in %.0f s", attempt, failure, wait
            )
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def _try(self, message: dict[str, Any]) -> tuple[str | None, float | None, bool]:
        """One attempt: (None, None, False) when Slack took it, else (why, Retry-After
        seconds, whether the message itself was refused as malformed)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        try:
            async with self._session.post(self._url, json=message) as response:
                if 200 <= response.status < 300:
                    return None, None, False
                body = (await response.text(errors="replace"))[:200]
                retry_after = response.headers.get("Retry-After", "")
                wait = (
                    min(float(retry_after), MAX_RETRY_AFTER_S)
                    if response.status == 429 and _number(retry_after)
                    else None
                )
                return f"HTTP {response.status} {body!r}", wait, response.status == 400
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return self._without_url(f"{type(exc).__name__}: {exc}"), None, False

    def _without_url(self, text: str) -> str:
        # aiohttp names the URL in some errors (an invalid one, a redirect).
        return text.replace(self._url, "<webhook URL>") if self._url else text

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _number(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False
