import pytest
from pydantic import ValidationError

from config import (
    ROLES,
    AllSettings,
    CollectorSettings,
    StackSettings,
    UnknownSetting,
    WorkerSettings,
    load,
)
from config.warehouse import WarehouseSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("HOSTSTREAM_"):
            monkeypatch.delenv(name)


def test_unset_endpoints_point_at_the_local_stack_ports(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_STACK_KAFKA_PORT", "29092")
    monkeypatch.setenv("HOSTSTREAM_STACK_POSTGRES_PORT", "25432")
    settings = WorkerSettings()
    assert settings.kafka_bootstrap == "127.0.0.1:29092"
    assert settings.postgres_dsn.get_secret_value() == (
        "postgresql://hoststream@127.0.0.1:25432/hoststream"
    )
    assert settings.gcs_emulator_host == "http://127.0.0.1:14443"
    assert settings.topic == "machine_metrics"
    collector = CollectorSettings()
    assert collector.kafka_bootstrap == "127.0.0.1:29092"
    assert collector.interval_s == 10.0


def test_explicit_endpoints_win(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    settings = WorkerSettings()
    assert settings.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert settings.faust_broker_url == "kafka://k1:9092;kafka://k2:9092"


def test_without_the_local_stack_the_endpoints_are_required(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_LOCAL_STACK", "false")
    with pytest.raises(ValidationError, match="HOSTSTREAM_KAFKA_BOOTSTRAP and HOSTSTREAM_POSTGRES"):
        WorkerSettings()


def test_a_collector_needs_kafka_but_no_database(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_LOCAL_STACK", "false")
    with pytest.raises(ValidationError, match="HOSTSTREAM_KAFKA_BOOTSTRAP must be set"):
        CollectorSettings()
    monkeypatch.setenv("HOSTSTREAM_KAFKA_BOOTSTRAP", "kafka-1:9092")
    assert CollectorSettings().bootstrap_servers == ["kafka-1:9092"]


@pytest.mark.parametrize(
    ("role", "name", "value", "message"),
    [
        (CollectorSettings, "KAFKA_BOOTSTRAP", "broker", "expected host:port"),
        (CollectorSettings, "INTERVAL_S", "0", "greater than or equal to 0.05"),
        (CollectorSettings, "INTERVAL_S", "often", "valid number"),
        (WorkerSettings, "TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        (WorkerSettings, "SLACK_WEBHOOK_URL", "hooks.slack.com/services/x", "an http.s. URL"),
        (WorkerSettings, "SLACK_WEBHOOK_URL", "https:///services/x", "an http.s. URL"),
        (WorkerSettings, "ALERTS_DASHBOARD_URL", "javascript:alert(1)", "an http.s. URL"),
    ],
)
def test_bad_values_are_refused_with_a_reason(monkeypatch, role, name, value, message):
    monkeypatch.setenv(f"HOSTSTREAM_{name}", value)
    with pytest.raises(ValidationError, match=message):
        role()


def test_the_password_is_not_shown(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_POSTGRES_DSN", "postgresql://u:hunter2@db/x")
    assert "hunter2" not in repr(WorkerSettings())


def test_a_bad_webhook_url_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_SLACK_WEBHOOK_URL", "hooks.example/T0/B0/s3cret")
    with pytest.raises(ValidationError) as refused:
        WorkerSettings()
    assert "s3cret" not in str(refused.value)


def test_a_misspelt_variable_is_an_error_not_a_silent_default(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_INTERVAL", "1")
    with pytest.raises(UnknownSetting, match="did you mean HOSTSTREAM_INTERVAL_S"):
        load(CollectorSettings)


def test_another_roles_variable_is_not_unknown(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_STACK_DIR", "/tmp/stack")
    monkeypatch.setenv("HOSTSTREAM_INTERVAL_S", "1")
    monkeypatch.setenv("HOSTSTREAM_WEB_PORT", "7000")
    assert load(WorkerSettings).web_port == 7000
    assert load(CollectorSettings).interval_s == 1.0
    assert str(load(StackSettings).stack_dir) == "/tmp/stack"


def test_each_role_reads_only_its_own_settings():
    collector, worker, stack, warehouse = (set(role.model_fields) for role in ROLES.values())
    assert "postgres_dsn" not in collector
    assert "interval_s" not in worker | stack | warehouse
    assert "batch_max_records" not in collector | stack | warehouse
    assert "stack_dir" not in collector | worker | warehouse
    assert "warehouse_reload_hours" not in collector | worker | stack
    # The worker and the warehouse apply the same rules, from the same settings.
    assert {"max_id_chars", "anomaly_cpu_p95_percent"} <= worker & warehouse
    assert set(AllSettings.model_fields) == collector | worker | stack | warehouse


def test_settings_handed_to_a_child_process_read_back_the_same(monkeypatch):
    settings = AllSettings(
        kafka_bootstrap="k:9092", postgres_dsn="postgresql://u:p@db/x", local_stack=False
    )
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    assert load(AllSettings) == settings


def test_the_warehouse_needs_no_broker_or_database_off_the_local_stack():
    settings = WarehouseSettings(local_stack=False)
    assert settings.kafka_bootstrap == ""
    assert settings.gcs_emulator_host == ""
    with pytest.raises(ValidationError, match="HOSTSTREAM_KAFKA_BOOTSTRAP"):
        WorkerSettings(local_stack=False)
    with pytest.raises(ValidationError, match="HOSTSTREAM_KAFKA_BOOTSTRAP"):
        AllSettings(local_stack=False)
