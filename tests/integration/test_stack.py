"""The local stack, checked the way a user would: every service answers its own client.

Runs against the session's stack (tests/stack_fixtures.py). Tests that stop a
service start it again, since the rest of the session shares the stack.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from gcloud.aio.storage import Storage
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from config import LOOPBACK, AllSettings
from stack import Stack, StackError
from stack.kafka import kafka_version
from tests.stack_fixtures import stack_test_settings

pytestmark = pytest.mark.integration


def test_status_reports_every_service_up_at_its_address(stack_settings: AllSettings) -> None:
    statuses = {s.name: s for s in Stack(stack_settings).status()}

    assert list(statuses) == list(Stack.SERVICES)
    assert all(s.up and s.pid and s.detail == "running" for s in statuses.values()), statuses
    assert statuses["kafka"].address == stack_settings.kafka_bootstrap
    assert statuses["postgres"].address == stack_settings.postgres_dsn.get_secret_value()
    assert statuses["gcs"].address == stack_settings.gcs_emulator_host
    assert statuses["bigquery"].address == stack_settings.bigquery_emulator_host
    assert all(s.log.is_file() for s in statuses.values())


async def test_kafka_has_the_topics_and_round_trips_a_record(stack_settings: AllSettings) -> None:
    servers = stack_settings.bootstrap_servers
    # A topic of its own: records in the metrics topic would leak into other tests.
    scratch = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(scratch, 1, 1)])
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
    finally:
        await admin.close()
    assert partitions[stack_settings.topic] == stack_settings.topic_partitions
    assert partitions[f"{stack_settings.topic}.dlq"] == stack_settings.topic_partitions

    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        sent = await producer.send_and_wait(scratch, b'{"cpu": 1.5}', key=b"host-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(scratch, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"host-1", b'{"cpu": 1.5}')


async def test_postgres_answers_as_hoststream(stack_settings: AllSettings) -> None:
    conn = await asyncpg.connect(stack_settings.postgres_dsn.get_secret_value())
    try:
        row = await conn.fetchrow("select 1 as one, current_user as who, current_database() as db")
    finally:
        await conn.close()
    assert tuple(row) == (1, "hoststream", "hoststream")


async def test_gcs_stores_and_returns_a_json_object(stack_settings: AllSettings) -> None:
    name = f"stack-test/{uuid.uuid4().hex}.json"
    body = orjson.dumps({"host": "h1", "cpu": 12.5})
    async with Storage(api_root=stack_settings.gcs_emulator_host) as storage:
        await storage.upload(stack_settings.gcs_bucket, name, body, content_type="application/json")
        assert await storage.download(stack_settings.gcs_bucket, name) == body
        listed = await storage.list_objects(stack_settings.gcs_bucket, params={"prefix": name})
    assert [(o["name"], o["contentType"]) for o in listed["items"]] == [(name, "application/json")]


def test_bigquery_creates_inserts_and_queries(stack_settings: AllSettings) -> None:
    client = bigquery.Client(
        project=stack_settings.gcp_project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=stack_settings.bigquery_emulator_host),
    )
    dataset = f"stack_test_{uuid.uuid4().hex[:8]}"
    client.create_dataset(dataset)
    try:
        table = client.create_table(
            bigquery.Table(
                f"{stack_settings.gcp_project}.{dataset}.samples",
                schema=[
                    bigquery.SchemaField("host", "STRING"),
                    bigquery.SchemaField("cpu", "FLOAT64"),
                ],
            )
        )
        errors = client.insert_rows_json(table, [{"host": "h1", "cpu": 10.0}, {"host": "h2"}])
        assert errors == []
        rows = client.query(f"select host, cpu from `{dataset}.samples` order by host").result()
        assert [(r.host, r.cpu) for r in rows] == [("h1", 10.0), ("h2", None)]
    finally:
        client.delete_dataset(dataset, delete_contents=True)


def test_up_again_leaves_running_services_alone(stack_settings: AllSettings) -> None:
    stack = Stack(stack_settings, echo=lambda line: None)
    before = {s.name: s.pid for s in stack.status()}

    stack.up()

    assert {s.name: s.pid for s in stack.status()} == before


def test_a_stopped_service_reports_down_and_comes_back(stack_settings: AllSettings) -> None:
    stack = Stack(stack_settings, echo=lambda line: None)
    # fake-gcs-server: the one that restarts in a blink, for the tests after this one.
    stack.service("gcs").stop()
    try:
        gcs = next(s for s in stack.status() if s.name == "gcs")
        assert (gcs.up, gcs.pid, gcs.detail) == (False, None, "not running")
        assert all(s.up for s in stack.status() if s.name != "gcs")
    finally:
        stack.up(["gcs"])
    assert all(s.up for s in stack.status())


def test_up_names_the_setting_when_a_port_is_taken(tmp_path: Path) -> None:
    settings = stack_test_settings(tmp_path / "stack")
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, settings.stack_gcs_port))
        squatter.listen()
        with pytest.raises(StackError, match="HOSTSTREAM_STACK_GCS_PORT") as raised:
            Stack(settings).up(["gcs"])
    assert str(settings.stack_gcs_port) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_status_detects_a_stale_pid_file(tmp_path: Path) -> None:
    settings = stack_test_settings(tmp_path / "stack")
    stack = Stack(settings)
    gone = _pid_of_an_exited_process()
    stack.service("gcs").pid_file.parent.mkdir(parents=True)
    stack.service("gcs").pid_file.write_text(f"{gone}\n")

    gcs = next(s for s in stack.status() if s.name == "gcs")

    assert (gcs.up, gcs.pid) == (False, None)
    assert f"stale pid file: process {gone} is gone" in gcs.detail


def _pid_of_an_exited_process() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_service_that_dies_at_start_fails_up_with_its_log(tmp_path: Path) -> None:
    # Jars that look present but hold no classes: the JVM exits at once.
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / f"kafka_2.13-{kafka_version()}.jar").touch()
    settings = stack_test_settings(tmp_path / "stack").model_copy(update={"kafka_libs_dir": libs})
    stack = Stack(settings, echo=lambda line: None)
    # Already formatted, so the broker itself is what fails, not the format step.
    data = stack.service("kafka").dir / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").touch()

    with pytest.raises(StackError, match="kafka exited during start") as raised:
        stack.up(["kafka"])

    assert str(stack.service("kafka").log) in raised.value.headline
    assert "kafka.Kafka" in raised.value.log_tail
    assert not any(s.up for s in stack.status())
