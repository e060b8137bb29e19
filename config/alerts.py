"""Alerts' settings: when gold's anomaly flags become alert events, and where Slack
messages about them go (agents/alerts.py raises them, agents/notify.py posts them)."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from config.common import CommonSettings


class AlertSettings(CommonSettings):
    """Settings of the alerts stage and its Slack notifier; a base of
    :class:`config.worker.WorkerSettings`."""

    slack_webhook_url: SecretStr = Field(
        default=SecretStr(""),
        description="Slack incoming-webhook URL alert messages are posted to. Empty: no "
        "messages; the alert events still go to the <topic>.alerts topic.",
    )
    alerts_quiet_after_s: float = Field(
        default=900.0,
        ge=0,
        description="A 5-minute window that ended longer ago than this (wall clock) when "
        "judged, a backlog or a replay of old data, raises events marked stale, which are "
        "never posted; an anomaly still open is announced by its first fresh window.",
    )
    alerts_host_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="At most one Slack message per host this often, seconds; the host's "
        "alert changes meanwhile go together in its next message.",
    )
    alerts_dedupe_window_s: float = Field(
        default=3600.0,
        gt=0,
        description="The notifier remembers the alert events it saw this long (and on start "
        "reads back this much of the alerts topic), so one derived twice after a crash is "
        "posted once.",
    )
    alerts_dashboard_url: str = Field(
        default="",
        description="Dashboard address for a link in each Slack message "
        "(<url>/#host=<host id>). Empty: no link.",
    )

    @field_validator("slack_webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: SecretStr) -> SecretStr:
        # Refused at start, not retried for ever by the notifier; the URL is a secret, so
        # the message does not repeat it.
        url = value.get_secret_value()
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http(s) URL (https://hooks.slack.com/services/...)")
        return value

    @field_validator("alerts_dashboard_url")
    @classmethod
    def _check_dashboard_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value


class WebhookSettings(AlertSettings):
    """What ``hoststream alerts test`` reads: the webhook alone, so no Kafka is required."""

    unused_endpoints: ClassVar[frozenset[str]] = frozenset({"kafka_bootstrap"})
