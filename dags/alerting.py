"""The hourly DAG's alert callbacks: they gather the DAG, the hour, the task and the log
URL from Airflow's context; warehouse/alerts.py words the message and sends it.

Where alerts go, all set in Airflow (nothing here is a hoststream setting):
- Slack: the Airflow Variable ``hoststream_slack_webhook_url`` (an incoming webhook URL;
  ``AIRFLOW_VAR_HOSTSTREAM_SLACK_WEBHOOK_URL`` in the environment works too);
- email: the Variable ``hoststream_alert_emails`` (comma-separated addresses), sent through
  Airflow's ``[smtp]`` settings (``smtp_host``, ``smtp_port``, ``smtp_starttls``,
  ``smtp_ssl``, ``smtp_mail_from``, ``smtp_timeout``) with the login and password of the
  connection ``smtp_default`` when it exists.
Neither set: the alert is only logged. A channel that fails is logged in one line and
does not stop the other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook, Variable, conf
from airflow.sdk.exceptions import AirflowNotFoundException

from warehouse.alerts import (
    FAILED,
    MISSED_DEADLINE,
    Alert,
    AlertError,
    SmtpSettings,
    alert_text,
    email_message,
    error_line,
    post_to_slack,
    send_email,
)

SLACK_WEBHOOK_VARIABLE = "hoststream_slack_webhook_url"
ALERT_EMAILS_VARIABLE = "hoststream_alert_emails"
SMTP_CONNECTION = "smtp_default"

log = logging.getLogger(__name__)


def hour_of(logical_date: datetime) -> datetime:
    """The lake hour a run loads: its logical date, cut to the hour, as a plain UTC
    datetime (Airflow passes pendulum's, whose arithmetic with timedelta breaks)."""
    moment = datetime.fromtimestamp(logical_date.timestamp(), UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def run_hour(logical_date: datetime | None, dag_run: Any) -> datetime:
    """The hour a run loads: that of its logical date, or, for a run triggered without
    one, of its ``run_after``."""
    return hour_of(logical_date or dag_run.run_after)


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every task: alert once the task failed for good (after
    its retries)."""
    ti = context["ti"]
    mapped = ti.map_index is not None and ti.map_index >= 0
    task = f"{ti.task_id}[{ti.map_index}]" if mapped else ti.task_id
    error = context.get("exception")
    send_alert(
        Alert(
            dag_id=ti.dag_id,
            hour=run_hour(context["logical_date"], context["dag_run"]),
            task_id=task,
            log_url=ti.log_url,
            what=FAILED,
            detail="" if error is None else error_line(error),
        )
    )


def on_deadline_missed(context: Mapping[str, Any], **_: Any) -> None:
    """The DAG's deadline callback (run by the executor): the run was not done in time.

    Airflow passes only the DagRun (as its REST API shows it) and the deadline, not the
    task instances, so the alert names the run and links to its page, which lists them.
    """
    run = context["dag_run"]
    deadline = context.get("deadline", {}).get("deadline_time")
    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    send_alert(
        Alert(
            dag_id=run["dag_id"],
            # A run triggered without a logical date has none: it loads its run_after hour.
            hour=hour_of(datetime.fromisoformat(run["logical_date"] or run["run_after"])),
            task_id="(the run: tasks not finished)",
            log_url=f"{base_url}/dags/{run['dag_id']}/runs/{quote(run['dag_run_id'])}",
            what=MISSED_DEADLINE,
            detail=f"deadline {deadline}" if deadline else "",
        )
    )


def smtp_settings() -> SmtpSettings:
    """Airflow's ``[smtp]`` settings, with ``smtp_default``'s login when it exists."""
    user = password = ""
    try:
        connection = BaseHook.get_connection(SMTP_CONNECTION)
        user, password = connection.login or "", connection.password or ""
    except AirflowNotFoundException:
        pass
    return SmtpSettings(
        host=conf.get("smtp", "smtp_host"),
        port=conf.getint("smtp", "smtp_port"),
        sender=conf.get("smtp", "smtp_mail_from"),
        starttls=conf.getboolean("smtp", "smtp_starttls"),
        ssl=conf.getboolean("smtp", "smtp_ssl"),
        user=user,
        password=password,
        timeout_s=conf.getfloat("smtp", "smtp_timeout"),
    )


def send_alert(alert: Alert) -> None:
    """Post ``alert`` to Slack and email it, to whichever is configured."""
    log.error("alert: %s", alert_text(alert).replace("\n", "; "))
    webhook_url = Variable.get(SLACK_WEBHOOK_VARIABLE, default=None)
    recipients = [
        address.strip()
        for address in (Variable.get(ALERT_EMAILS_VARIABLE, default=None) or "").split(",")
        if address.strip()
    ]
    if not webhook_url and not recipients:
        log.warning(
            "no alert sent: set the Airflow Variables %s and/or %s",
            SLACK_WEBHOOK_VARIABLE,
            ALERT_EMAILS_VARIABLE,
        )
    if webhook_url:
        try:
            post_to_slack(webhook_url, alert)
        except AlertError as exc:
            log.error("Slack alert not sent: %s", exc)
    if recipients:
        smtp = smtp_settings()
        try:
            send_email(email_message(alert, smtp.sender, recipients), smtp)
        except AlertError as exc:
            log.error("email alert not sent: %s", exc)
