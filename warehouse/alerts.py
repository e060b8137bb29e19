"""The hourly DAG's alerts: what a message says (pure) and how it is sent (Slack, email).

A message names the DAG, the hour it loads, the task and where its log is, so whoever
reads it in Slack or a mailbox can open the log without searching. The DAG's callbacks
(dags/alerting.py) gather those from Airflow's context and hand them here; nothing
here imports Airflow, so the wording is tested without it.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

FAILED = "failed"
MISSED_DEADLINE = "missed its deadline"


class AlertError(RuntimeError):
    """An alert that could not be delivered, with the endpoint and the reason."""


@dataclass(frozen=True)
class Alert:
    """One thing that went wrong in one run of the DAG."""

    dag_id: str
    hour: datetime
    """The hour of the lake the run loads (its logical date), UTC."""
    task_id: str
    """The task that failed, or the tasks not finished when the deadline passed."""
    log_url: str
    what: str
    """:data:`FAILED` or :data:`MISSED_DEADLINE`."""
    detail: str = ""
    """The error's one line (a failure), or how late the run is (a deadline)."""


def hour_label(hour: datetime) -> str:
    """``2026-11-22T13`` for the hour starting at 13:00 UTC (``hoststream warehouse
    load --hour`` takes the same text)."""
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H")


def alert_subject(alert: Alert) -> str:
    """One line: ``[hoststream] hourly_warehouse 2026-11-22T13: task load_raw failed``."""
    hour = hour_label(alert.hour)
    return f"[hoststream] {alert.dag_id} {hour}: task {alert.task_id} {alert.what}"


def alert_text(alert: Alert) -> str:
    """The message body: the subject, then DAG, hour, task, the detail when there is one,
    and the log URL, one per line."""
    lines = [
        alert_subject(alert),
        f"DAG: {alert.dag_id}",
        f"hour: {hour_label(alert.hour)} (UTC)",
        f"task: {alert.task_id}",
    ]
    if alert.detail:
        lines.append(f"detail: {alert.detail}")
    lines.append(f"log: {alert.log_url}")
    return "\n".join(lines)


def error_line(error: BaseException) -> str:
    """``Type: the message's first line``, or the type alone for an error without one:
    tracebacks stay in the log the alert links to."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def slack_payload(alert: Alert) -> dict[str, str]:
    """The JSON body of a Slack incoming-webhook post (``text`` is the whole message)."""
    return {"text": alert_text(alert)}


def email_message(alert: Alert, sender: str, recipients: list[str]) -> EmailMessage:
    """A plain-text email of the alert from ``sender`` to ``recipients``."""
    message = EmailMessage()
    message["Subject"] = alert_subject(alert)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(alert_text(alert))
    return message


def post_to_slack(webhook_url: str, alert: Alert, timeout_s: float = 10.0) -> None:
    """POST the alert to a Slack incoming webhook; :class:`AlertError` unless it answers 2xx."""
    request = urllib.request.Request(
        webhook_url,
        data=json.dumps(slack_payload(alert)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # The webhook URL is a secret: errors name its host only.
    host = urllib.parse.urlsplit(webhook_url).netloc
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise AlertError(f"Slack webhook at {host} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertError(f"Slack webhook at {host} unreachable: {reason}") from exc


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send email: Airflow's ``[smtp]`` settings, read by the DAG."""

    host: str
    port: int
    sender: str
    starttls: bool = False
    ssl: bool = False
    user: str = ""
    password: str = ""
    timeout_s: float = 30.0


def send_email(message: EmailMessage, smtp: SmtpSettings) -> None:
    """Send ``message`` through the SMTP server of ``smtp``; :class:`AlertError` when the
    server cannot be reached or refuses it."""
    try:
        if smtp.ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout_s, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
        with client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                client.login(smtp.user, smtp.password)
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertError(f"email via {smtp.host}:{smtp.port} failed: {exc}") from exc
