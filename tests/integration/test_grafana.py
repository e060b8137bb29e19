"""Every query of the Grafana provisioning (dashboard panels, the host variable, alert
rules) runs against the medallion a real worker filled from a test stream, expanded
as Grafana's PostgreSQL data source expands it, and returns the figures a user reads
off the dashboard: the test hosts, an anomaly, values of the records sent.

Grafana itself cannot run here; tests/unit/test_grafana.py checks the files.
"""

from __future__ import annotations

import copy
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from tests.hostile import BAD_KINDS, Forge, edge_samples
from tests.integration.fixtures import Processes, committed_up_to_end, eventually, settings_env
from tests.integration.gold_check import Message, produce
from tests.integration.test_api import own_settings
from tests.unit.samples import full_document
from tests.unit.test_grafana import Query, alert_rules, grafana_sql, queries

pytestmark = pytest.mark.integration

HOSTS = ["db-1", "o'brien"]
"""Hosts with every optional group; a quote in a host id must reach SQL as data."""
STEP_S = 60
SAMPLES = 130
CPU_ANOMALY_AGO = timedelta(minutes=40)
"""db-1's CPU is over gold's threshold for the 5-minute window this long ago."""
MEMORY_ANOMALY_HOST = "o'brien"
"""Its memory is over the threshold in the newest window: the alert rules see it."""


@dataclass(frozen=True)
class Stream:
    database: asyncpg.Connection
    now: datetime
    newest_cpu_percent: dict[str, float]


def document(host: str, now: datetime, minute: int, rng: random.Random) -> dict[str, Any]:
    """``host``'s sample of ``minute`` (of SAMPLES, the last at ``now``) with every
    optional group; values drawn under the thresholds but for the two anomalies."""
    moment = now - timedelta(seconds=STEP_S * (SAMPLES - 1 - minute))
    sample = synthetic_document(host, moment, rng, interval_s=STEP_S)
    full = full_document()
    cpu = rng.uniform(5, 60)
    if host == "db-1" and same_5min_window(moment, now - CPU_ANOMALY_AGO):
        cpu = rng.uniform(95, 99)
    memory = rng.uniform(20, 60)
    if host == MEMORY_ANOMALY_HOST and minute >= SAMPLES - 2:
        memory = 97.5
    sample["cpu"] = full["cpu"] | {"percent": cpu, "per_core_percent": [cpu, cpu, cpu, cpu]}
    sample["cpu"]["load"] = {k: rng.uniform(0, 4) for k in ("load_1m", "load_5m", "load_15m")}
    total = sample["memory"]["total_bytes"]
    used = int(total * memory / 100)
    sample["memory"] = {
        "total_bytes": total,
        "available_bytes": total - used,
        "used_bytes": used,
        "percent": memory,
        "swap": full["memory"]["swap"] | {"used_bytes": rng.randrange(0, 2000)},
    }
    sample["disk_io"] = copy.deepcopy(full["disk_io"])
    sample["disk_io"][0]["read_bytes_per_s"] = rng.uniform(0, 1e6)
    sample["host"] = full["host"] | {"uptime_s": 86400.0 + minute * STEP_S}
    return sample


def same_5min_window(one: datetime, other: datetime) -> bool:
    return one.timestamp() // 300 == other.timestamp() // 300


def messages(now: datetime, settings: AllSettings) -> tuple[list[Message], dict[str, float]]:
    """The stream: HOSTS every STEP_S up to ``now``, edge hosts, a few records of every
    kind silver refuses; and each main host's newest CPU percent."""
    rng = random.Random(20)
    stream = []
    newest = {}
    for minute in range(SAMPLES):
        for host in HOSTS:
            sample = document(host, now, minute, rng)
            newest[host] = sample["cpu"]["percent"]
            value = orjson.dumps(sample)
            if host == "o'brien":
                # Valid, kept by silver, and refused by jsonb: a \u0000 in a mountpoint and
                # a tag, and a number past numeric's range in a field silver ignores.
                nul_disk = {**sample["disks"][0], "mountpoint": "/mnt/a\x00b", "percent": 3.0}
                value = orjson.dumps(sample | {"disks": [*sample["disks"], nul_disk]})
                value = (
                    value[:-1]
                    + b', "x_extra": 1e999999, "tags": [{"key": "k", "value": "\\u0000"}]}'
                )
            stream.append(Message(host.encode(), value, event_id=sample["event_id"]))
    stream += edge_samples(rng, now, settings.max_future_skew_s)
    forge = Forge(rng, HOSTS, now)
    for _, make in BAD_KINDS.values():
        stream += [Message(*make(forge), kind="bad") for _ in range(2)]
    return stream, newest


@pytest.fixture(scope="module")
async def stream(
    stack_settings: AllSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stream]:
    """The database a worker filled from :func:`messages`, its windows final but the
    newest; the worker is stopped, so every test reads the same rows."""
    folder = tmp_path_factory.mktemp("grafana")
    settings = await own_settings(stack_settings, folder, gold_finalize_interval_s=1.0)
    now = datetime.now(UTC)
    sent, newest = messages(now, settings)
    await ensure_topics(settings)
    await produce(settings, sent)
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    processes = Processes(folder)
    try:
        processes.start(settings_env(settings), "worker", name="worker")
        await eventually(lambda: committed_up_to_end(settings), what="the stream to be processed")
        await eventually(
            lambda: database.fetchval("SELECT count(*) FROM gold.perf_5min_summary WHERE is_final"),
            what="final gold windows",
        )
        processes.stop_all()
        yield Stream(database, now, newest)
    finally:
        processes.stop_all()
        await database.close()


async def run(stream: Stream, query: Query, host: str) -> list[asyncpg.Record]:
    """``query`` as Grafana runs it for ``host`` over the three hours up to the stream's
    end (an alert rule: over its own relative range)."""
    end = stream.now + timedelta(minutes=1)
    start = end - timedelta(hours=3)
    for rule in alert_rules():
        if query.where.startswith(f"rule {rule['uid']} "):
            start = end - timedelta(seconds=rule["data"][0]["relativeTimeRange"]["from"])
    sql = grafana_sql(query.sql, start, end, 60, {"host": host})
    return list(await stream.database.fetch(sql))


async def test_every_query_returns_rows_with_a_value_in_every_column(
    stream: Stream,
) -> None:
    problems = []
    for query in queries():
        for host in HOSTS:
            try:
                rows = await run(stream, query, host)
            except asyncpg.PostgresError as error:
                problems.append(f"{query.where} for {host}: {error}")
                continue
            if not rows:
                problems.append(f"{query.where} for {host}: no rows")
                continue
            columns = list(rows[0].keys())  # a Record iterates over its values
            empty = [c for c in columns if all(r[c] is None for r in rows)]
            if empty:
                problems.append(f"{query.where} for {host}: only nulls in {empty}")
    assert not problems, "\n".join(problems)


async def test_every_query_runs_for_every_host_the_host_variable_lists(
    stream: Stream,
) -> None:
    """Edge hosts too: 256-character and non-ASCII ids, no disks, unknown fields."""
    (variable,) = [q for q in queries() if "variable host" in q.where]
    hosts = [r["__value"] for r in await run(stream, variable, "")]
    assert set(HOSTS) <= set(hosts)
    assert len(hosts) > 10
    failed = []
    for query in [q for q in queries() if "$host" in q.sql]:
        for host in hosts:
            try:
                await run(stream, query, host)
            except asyncpg.PostgresError as error:
                failed.append(f"{query.where} for {host[:40]}: {error}")
    assert not failed, "\n".join(failed[:20])


def panel_query(title: str) -> Query:
    (query,) = [q for q in queries() if f"panel {title!r} " in q.where]
    return query


async def test_the_panels_show_the_stream_newest_values_and_its_anomalies(
    stream: Stream,
) -> None:
    for host in HOSTS:
        (busy,) = await run(stream, panel_query("CPU busy"), host)
        assert busy["cpu_percent"] == stream.newest_cpu_percent[host]
    anomalies = await run(stream, panel_query("Anomalies (all hosts, newest first)"), "")
    flagged = {(r["host_id"], r["window"]) for r in anomalies if r["cpu_anomaly"]}
    assert ("db-1", "5-minute") in flagged
    cpu_window = stream.now - CPU_ANOMALY_AGO
    assert any(
        r["host_id"] == "db-1" and r["time"] <= cpu_window < r["time"] + timedelta(minutes=5)
        for r in anomalies
    )
    (root,) = await run(stream, panel_query("Root FS used"), "o'brien")
    # The '/' disk (synthetic: 10-80 %), not the one at 3 % with a NUL in its name.
    assert 10 <= root["percent"] <= 80


async def test_the_alert_rules_fire_for_the_host_over_its_threshold_only(
    stream: Stream,
) -> None:
    firing = {}
    for rule in alert_rules():
        query = next(q for q in queries() if q.where.startswith(f"rule {rule['uid']} "))
        (threshold,) = [d for d in rule["data"] if d["refId"] == rule["condition"]]
        (above,) = threshold["model"]["conditions"][0]["evaluator"]["params"]
        rows = await run(stream, query, "")
        firing[rule["uid"]] = {r["host_id"] for r in rows if list(r.values())[-1] > above} & set(
            HOSTS
        )
    assert firing["hoststream-memory-anomaly"] == {MEMORY_ANOMALY_HOST}
    assert firing["hoststream-memory-warning"] == {MEMORY_ANOMALY_HOST}
    assert firing["hoststream-cpu-anomaly"] == set()
    assert firing["hoststream-host-silent"] == set()
