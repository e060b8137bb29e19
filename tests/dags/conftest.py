"""The DAG's test session, run by .venv-airflow's pytest (``make test`` runs it after the
main suite; tests/dags/pytest.ini keeps the main suite's plugins out).

Airflow's home and its SQLite database live in a temporary folder per session
(``airflow db migrate`` once). fake-gcs-server and bqemulator are started by the main
virtualenv's Python (tests/dags/emulators.py), on free loopback ports; a local HTTP
server stands in for Slack's webhook and aiosmtpd for the SMTP server, so alerts are
really sent and really received.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="hoststream-airflow-"))
LOG_URL_BASE = "http://127.0.0.1:8080"
DATASET = "hoststream_dag_test"

# Airflow reads its configuration when first imported: set before any test imports it.
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__API__BASE_URL": LOG_URL_BASE,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(AIRFLOW_HOME / "logs"),
    }
)
sys.path.insert(0, str(REPO / "dags"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """Airflow's metadata database, migrated once for the session."""
    started = time.monotonic()
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    print(f"airflow db migrate: {time.monotonic() - started:.1f} s")
    yield AIRFLOW_HOME
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@dataclass(frozen=True)
class Emulators:
    """fake-gcs-server and bqemulator of this session."""

    project: str
    bucket: str
    gcs: str
    bigquery: str

    def upload(self, name: str, data: bytes) -> None:
        """Write object ``name`` of the bucket, replacing it."""
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        request = urllib.request.Request(
            f"{self.gcs}/upload/storage/v1/b/{self.bucket}/o?{query}", data=data, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query in the BigQuery emulator, as dicts."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        client = bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.bigquery),
        )
        return [dict(row.items()) for row in client.query(sql).result()]


@pytest.fixture(scope="session")
def emulators(airflow_db: Path) -> Iterator[Emulators]:
    """Both emulators up, and the environment pointing Airflow's Google connection and
    hoststream's warehouse settings at them."""
    stack_dir = Path(tempfile.mkdtemp(prefix="hoststream-dag-stack-"))
    command = [str(MAIN_PYTHON), "-m", "tests.dags.emulators"]
    up = subprocess.run(
        [*command, "up", str(stack_dir)], cwd=REPO, capture_output=True, text=True, check=False
    )
    if up.returncode != 0:
        subprocess.run([*command, "down", str(stack_dir)], cwd=REPO, capture_output=True)
        pytest.fail(f"emulators did not start:\n{up.stderr}")
    endpoints = json.loads(up.stdout.strip().splitlines()[-1])
    found = Emulators(
        endpoints["project"], endpoints["bucket"], endpoints["gcs"], endpoints["bigquery"]
    )
    connection = {
        "conn_type": "google_cloud_platform",
        "extra": {"project": found.project, "is_anonymous": True},
    }
    os.environ.update(
        {
            "STORAGE_EMULATOR_HOST": found.gcs,
            "BIGQUERY_EMULATOR_HOST": found.bigquery,
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(connection),
            "HOSTSTREAM_GCP_PROJECT": found.project,
            "HOSTSTREAM_GCS_BUCKET": found.bucket,
            "HOSTSTREAM_GCS_EMULATOR_HOST": found.gcs,
            "HOSTSTREAM_BIGQUERY_EMULATOR_HOST": found.bigquery,
            "HOSTSTREAM_BIGQUERY_DATASET": DATASET,
            "HOSTSTREAM_WAREHOUSE_RELOAD_HOURS": "3",
        }
    )
    try:
        yield found
    finally:
        subprocess.run([*command, "down", str(stack_dir)], cwd=REPO, capture_output=True)
        shutil.rmtree(stack_dir, ignore_errors=True)


@dataclass
class AlertInbox:
    """What the local Slack webhook and SMTP server received."""

    slack: list[dict[str, Any]] = field(default_factory=list)
    mail: list[EmailMessage] = field(default_factory=list)

    def clear(self) -> None:
        self.slack.clear()
        self.mail.clear()


class _MailHandler:
    def __init__(self, inbox: AlertInbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.inbox.mail.append(message)
        return "250 OK"


@pytest.fixture(scope="session")
def alerts() -> Iterator[AlertInbox]:
    """A Slack webhook and an SMTP server on loopback, set as the DAG's alert targets
    (the Airflow Variables and ``[smtp]`` settings dags/alerting.py reads)."""
    from aiosmtpd.controller import Controller

    inbox = AlertInbox()

    class Webhook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            inbox.slack.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    webhook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    smtp_port = free_port()
    smtp = Controller(_MailHandler(inbox), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    os.environ.update(
        {
            "AIRFLOW_VAR_HOSTSTREAM_SLACK_WEBHOOK_URL": (
                f"http://127.0.0.1:{webhook.server_address[1]}/services/T0/B0/test"
            ),
            "AIRFLOW_VAR_HOSTSTREAM_ALERT_EMAILS": "ops@example.com, dba@example.com",
            "AIRFLOW__SMTP__SMTP_HOST": "127.0.0.1",
            "AIRFLOW__SMTP__SMTP_PORT": str(smtp_port),
            "AIRFLOW__SMTP__SMTP_STARTTLS": "False",
            "AIRFLOW__SMTP__SMTP_SSL": "False",
            "AIRFLOW__SMTP__SMTP_MAIL_FROM": "airflow@example.com",
        }
    )
    try:
        yield inbox
    finally:
        smtp.stop()
        webhook.shutdown()
        webhook.server_close()
