"""``hoststream alerts``: check where the worker's alert messages go."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import NoReturn

import typer

from config.alerts import WebhookSettings

alerts_cli = typer.Typer(help="Alerts to Slack: check the webhook.", no_args_is_help=True)

TEST_ATTEMPTS = 3


@alerts_cli.command("test")
def send_test() -> None:
    """Post a test message to HOSTSTREAM_SLACK_WEBHOOK_URL (3 tries): exit 0 when Slack
    took it, 1 when it did not, 2 when no webhook is set."""
    from app.cli import require_extra, settings_or_exit

    require_extra("worker")  # aiohttp, which the worker's notifier posts with too
    url = settings_or_exit(WebhookSettings).slack_webhook_url.get_secret_value()
    if not url:
        _fail("HOSTSTREAM_SLACK_WEBHOOK_URL is not set: no webhook to test", code=2)
    failure = asyncio.run(_post_test(url))
    if failure is not None:
        _fail(f"the Slack webhook did not take the test message ({TEST_ATTEMPTS} tries): {failure}")
    typer.echo("hoststream: the Slack webhook took the test message")


async def _post_test(url: str) -> str | None:
    from sinks.slack import SlackWebhook, WebhookFailed

    # The command's one line says what failed; the webhook's line per retry is for workers.
    logging.getLogger("sinks.slack").setLevel(logging.ERROR)
    webhook = SlackWebhook(url)
    text = f"hoststream test message from {socket.gethostname()}: alerts will come here."
    try:
        await webhook.post({"text": text}, attempts=TEST_ATTEMPTS)
    except WebhookFailed as exc:
        return str(exc)
    finally:
        await webhook.close()
    return None


def _fail(message: str, code: int = 1) -> NoReturn:
    # Imported here: app.cli imports this module to register the commands.
    from app.cli import fail

    fail(message, code)
