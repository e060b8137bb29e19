"""The README's run command: the stack, a collector and a worker, with rows arriving."""

from __future__ import annotations

import re

import pytest

from config import AllSettings
from tests.integration.fixtures import run_command, settings_env

pytestmark = pytest.mark.integration


def test_run_shows_this_hosts_rows_arriving_within_30_seconds(pipeline_settings: AllSettings):
    env = settings_env(pipeline_settings)
    done = run_command(env, "run", "--duration", "25", "--interval", "1", timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hoststream is running" in done.stdout
    assert f"psql {pipeline_settings.postgres_dsn.get_secret_value()}" in done.stdout
    silver = [int(n) for n in re.findall(r"silver (\d+) rows", done.stdout)]
    assert silver, done.stdout
    assert silver[-1] >= 5, done.stdout
    assert "1 host(s)" in done.stdout
    base = f"http://{pipeline_settings.web_host}:{pipeline_settings.web_port}"
    assert f"{base}/api/hosts" in done.stdout
    assert f"{base}/metrics" in done.stdout
    assert re.search(r"hoststream warehouse load --hour \d{4}-\d\d-\d\dT\d\d", done.stdout)
