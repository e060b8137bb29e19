"""The hourly DAG's alert messages (warehouse/alerts.py): what they say, and what a
sender does when Slack or the SMTP server is away or refuses. Delivery through
Airflow's callbacks is tested in tests/dags."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar

import pytest

from stack.throwaway import free_ports
from warehouse.alerts import (
    FAILED,
    MISSED_DEADLINE,
    Alert,
    AlertError,
    SmtpSettings,
    alert_subject,
    alert_text,
    email_message,
    error_line,
    hour_label,
    post_to_slack,
    send_email,
    slack_payload,
)

LOG_URL = (
    "http://airflow.example:8080/dags/hourly_warehouse/runs/"
    "scheduled__2026-11-22T13%3A00%3A00%2B00%3A00/tasks/clean/mapped/2?try_number=3"
)
BAD_OBJECT = "raw/machine_metrics/dt=2026-11-22/hour=13/machine_metrics+0+7.ndjson"


def failed_clean() -> Alert:
    return Alert(
        dag_id="hourly_warehouse",
        hour=datetime(2026, 11, 22, 13, tzinfo=UTC),
        task_id="clean[2]",
        log_url=LOG_URL,
        what=FAILED,
        detail=f"BadObject: {BAD_OBJECT} line 3: not JSON",
    )


def test_the_message_names_the_dag_the_hour_the_task_and_the_log():
    text = alert_text(failed_clean())
    assert text.splitlines() == [
        "[hoststream] hourly_warehouse 2026-11-22T13: task clean[2] failed",
        "DAG: hourly_warehouse",
        "hour: 2026-11-22T13 (UTC)",
        "task: clean[2]",
        f"detail: BadObject: {BAD_OBJECT} line 3: not JSON",
        f"log: {LOG_URL}",
    ]


def test_a_missed_deadline_without_detail_has_no_empty_detail_line():
    hour = datetime(2026, 11, 22, 13, tzinfo=UTC)
    alert = Alert("hourly_warehouse", hour, "run", "http://x/", MISSED_DEADLINE)
    subject = "[hoststream] hourly_warehouse 2026-11-22T13: task run missed its deadline"
    assert alert_subject(alert) == subject
    assert not any(line.startswith("detail") for line in alert_text(alert).splitlines())


def test_the_hour_is_said_in_utc_whatever_zone_it_came_in():
    paris = timezone(timedelta(hours=1))
    assert hour_label(datetime(2026, 11, 22, 14, 0, tzinfo=paris)) == "2026-11-22T13"
    assert hour_label(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)) == "2026-12-31T23"


def test_an_error_is_said_in_one_line_with_its_type():
    assert error_line(ValueError("bad line 3: not JSON\n  detail\n")) == (
        "ValueError: bad line 3: not JSON"
    )
    assert error_line(TimeoutError()) == "TimeoutError"


def test_slack_gets_the_whole_message_as_text_and_email_as_subject_and_body():
    alert = failed_clean()
    assert slack_payload(alert) == {"text": alert_text(alert)}
    message = email_message(alert, "airflow@example.com", ["ops@example.com", "dba@example.com"])
    assert message["Subject"] == alert_subject(alert)
    assert message["From"] == "airflow@example.com"
    assert message["To"] == "ops@example.com, dba@example.com"
    assert message.get_content().strip() == alert_text(alert)


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Answer]]]:
    """A local stand-in for Slack's webhook endpoint that answers ``handler.status``."""
    handler = type("Handler", (_Answer,), {"bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/secret", handler
    server.shutdown()
    server.server_close()


def test_a_webhook_post_carries_the_payload(webhook):
    url, handler = webhook
    post_to_slack(url, failed_clean())
    assert [json.loads(body) for body in handler.bodies] == [slack_payload(failed_clean())]


def test_a_webhook_that_refuses_raises_one_line_without_the_secret(webhook):
    url, handler = webhook
    handler.status = 404
    with pytest.raises(AlertError) as caught:
        post_to_slack(url, failed_clean())
    assert str(caught.value) == f"Slack webhook at {url.split('/')[2]} answered HTTP 404"
    assert "secret" not in str(caught.value)


def test_an_unreachable_webhook_or_smtp_server_raises_alert_error():
    (port,) = free_ports(1)
    with pytest.raises(AlertError, match=f"Slack webhook at 127.0.0.1:{port} unreachable"):
        post_to_slack(f"http://127.0.0.1:{port}/hook", failed_clean(), timeout_s=2)
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="a@example.com", timeout_s=2)
    with pytest.raises(AlertError, match=f"email via 127.0.0.1:{port} failed"):
        send_email(email_message(failed_clean(), smtp.sender, ["b@example.com"]), smtp)
