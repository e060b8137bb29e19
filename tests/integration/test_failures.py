"""A service that is not there at start: one clear line and a non-zero exit, quickly."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from config import AllSettings, local_postgres_dsn
from tests.integration.fixtures import run_command, settings_env
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration


def test_worker_without_a_broker_exits_with_one_clear_line(pipeline_settings: AllSettings):
    dead = f"127.0.0.1:{free_port()}"
    env = settings_env(pipeline_settings.model_copy(update={"kafka_bootstrap": dead}))
    started = time.monotonic()
    done = run_command(env, "worker", timeout_s=60)
    assert done.returncode == 1
    assert f"hoststream: Kafka at {dead} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert time.monotonic() - started < 30


def test_worker_without_a_database_exits_with_one_clear_line(pipeline_settings: AllSettings):
    port = free_port()
    dsn = SecretStr(local_postgres_dsn(port))
    env = settings_env(pipeline_settings.model_copy(update={"postgres_dsn": dsn}))
    done = run_command(env, "worker", timeout_s=60)
    assert done.returncode == 1
    at = f"postgresql://hoststream@127.0.0.1:{port}/hoststream"
    assert f"hoststream: PostgreSQL at {at} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_worker_with_a_missing_lake_bucket_exits_with_one_clear_line(
    pipeline_settings: AllSettings,
):
    env = settings_env(pipeline_settings.model_copy(update={"gcs_bucket": "no-such-bucket"}))
    done = run_command(env, "worker", timeout_s=60)
    assert done.returncode == 1
    assert "hoststream: GCS bucket gs://no-such-bucket does not exist (HTTP 404" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_replay_with_gcs_away_stops_with_one_clear_line(pipeline_settings: AllSettings):
    dead = f"http://127.0.0.1:{free_port()}"
    env = settings_env(pipeline_settings.model_copy(update={"gcs_emulator_host": dead}))
    done = run_command(env, "replay", "--from", "2026-11-22T10", timeout_s=60)
    assert done.returncode == 1
    assert "hoststream: GCS does not answer for gs://" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_collector_without_a_broker_exits_with_one_clear_line(pipeline_settings: AllSettings):
    dead = f"127.0.0.1:{free_port()}"
    env = settings_env(pipeline_settings.model_copy(update={"kafka_bootstrap": dead}))
    done = run_command(env, "collect", "--count", "1", timeout_s=60)
    assert done.returncode == 1
    assert f"hoststream: Kafka at {dead} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_bad_configuration_names_the_variable_and_exits_2(pipeline_settings: AllSettings):
    env = settings_env(pipeline_settings)
    env["HOSTSTREAM_TOPIC_PARTITIONS"] = "none"
    done = run_command(env, "worker", timeout_s=30)
    assert done.returncode == 2
    assert "HOSTSTREAM_TOPIC_PARTITIONS: Input should be a valid integer" in done.stderr
