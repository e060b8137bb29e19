import pytest
from pydantic import ValidationError

from app.settings import Settings, UnknownSetting, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("HOSTSTREAM_"):
            monkeypatch.delenv(name)


def test_unset_endpoints_point_at_the_local_stack_ports(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_STACK_KAFKA_PORT", "29092")
    monkeypatch.setenv("HOSTSTREAM_STACK_POSTGRES_PORT", "25432")
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:29092"
    assert settings.postgres_dsn.get_secret_value() == (
        "postgresql://hoststream@127.0.0.1:25432/hoststream"
    )
    assert settings.gcs_emulator_host == "http://127.0.0.1:14443"
    assert settings.interval_s == 10.0
    assert settings.topic == "machine_metrics"


def test_explicit_endpoints_win(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    settings = Settings()
    assert settings.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert settings.faust_broker_url == "kafka://k1:9092;kafka://k2:9092"


def test_without_the_local_stack_the_endpoints_are_required(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_LOCAL_STACK", "false")
    with pytest.raises(ValidationError, match="HOSTSTREAM_KAFKA_BOOTSTRAP and HOSTSTREAM_POSTGRES"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KAFKA_BOOTSTRAP", "broker", "expected host:port"),
        ("INTERVAL_S", "0", "greater than or equal to 0.05"),
        ("INTERVAL_S", "often", "valid number"),
        ("TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
    ],
)
def test_bad_values_are_refused_with_a_reason(monkeypatch, name, value, message):
    monkeypatch.setenv(f"HOSTSTREAM_{name}", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_the_password_is_not_shown(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_POSTGRES_DSN", "postgresql://u:hunter2@db/x")
    assert "hunter2" not in repr(Settings())


def test_a_misspelt_variable_is_an_error_not_a_silent_default(monkeypatch):
    monkeypatch.setenv("HOSTSTREAM_INTERVAL", "1")
    with pytest.raises(UnknownSetting, match="did you mean HOSTSTREAM_INTERVAL_S"):
        load_settings()
