"""The lookup API on real workers: any worker answers any host (routed to the owner),
the values are silver's, the token guards everything but the probes, bad input gets
400 or 404 and never 500, and the answers keep to the OpenAPI document."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg
import hypothesis
import orjson
import pytest
import schemathesis
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from pydantic import SecretStr
from yarl import URL

from app.preflight import ensure_topics
from app.worker import build_worker
from collector.synthetic import synthetic_document
from config import AllSettings
from schemas.api import iso
from schemas.quantiles import exact_quantile
from schemas.windows import WINDOW_SIZES_S, window_start
from sinks.medallion_db import MedallionDb
from stack.throwaway import create_database
from tests.integration.fixtures import (
    Processes,
    committed_up_to_end,
    eventually,
    settings_env,
)
from tests.integration.gold_check import Message, produce, sample_message, within_sketch_bound
from tests.stack_fixtures import free_port
from web.openapi import openapi_document

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
HOSTS = 24
SAMPLES_PER_HOST = 100
STEP_S = 60
API_WINDOWS = {"5m": "5min", "1h": "1h"}


def stream(now: datetime, seed: int) -> list[Message]:
    """Samples of HOSTS hosts every STEP_S seconds up to ``now``: closed windows and an
    open one per host, some over the anomaly thresholds (cpu is drawn 0-100)."""
    rng = random.Random(seed)
    records = []
    for n in range(SAMPLES_PER_HOST):
        moment = now - timedelta(seconds=STEP_S * (SAMPLES_PER_HOST - 1 - n))
        for h in range(HOSTS):
            document = synthetic_document(f"host-{h:02d}", moment, rng, interval_s=STEP_S)
            document["tags"] = [{"key": "team", "value": f"t{h % 3}"}]
            records.append(sample_message(document))
    return records


async def own_settings(stack_settings: AllSettings, folder: Path, **update: Any) -> AllSettings:
    """The stack's settings with a database, topic, group and state of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    dsn = await create_database(stack_settings.postgres_dsn.get_secret_value(), f"api_{suffix}")
    return stack_settings.model_copy(
        update={
            "topic": f"machine_metrics_{suffix}",
            "app_id": f"hoststream-api-{suffix}",
            "postgres_dsn": SecretStr(dsn),
            "data_dir": folder / "worker",
            "web_port": free_port(),
            "lake_enabled": False,
            "gold_upsert_interval_s": 0.5,
            **update,
        }
    )


def base_url(settings: AllSettings) -> str:
    return f"http://{settings.web_host}:{settings.web_port}"


async def get(
    url: str, token: str | None = TOKEN, **params: str
) -> tuple[int, dict[str, Any] | str]:
    """GET ``url``: (status, JSON answer, or the text when it is not JSON)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(URL(url, encoded=True), headers=headers, params=params) as response,
    ):
        text = await response.text(errors="replace")
        try:
            return response.status, orjson.loads(text)
        except orjson.JSONDecodeError:
            return response.status, text


@pytest.fixture(scope="module")
async def served(
    stack_settings: AllSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AllSettings]:
    """One worker with the token set, that has consumed :func:`stream` and samples of
    hosts whose tags PostgreSQL cannot store as they are."""
    folder = tmp_path_factory.mktemp("api")
    settings = await own_settings(stack_settings, folder, web_token=SecretStr(TOKEN))
    await ensure_topics(settings)
    await produce(settings, stream(datetime.now(UTC), seed=1) + odd_tags(datetime.now(UTC)))
    processes = Processes(folder)
    try:
        processes.start(settings_env(settings), "worker", name="worker")
        await eventually(lambda: committed_up_to_end(settings), what="the stream to be processed")
        yield settings
    finally:
        processes.stop_all()


def odd_tags(now: datetime) -> list[Message]:
    """Valid samples whose tags hold NUL (jsonb refuses it), a lone surrogate (no UTF-8
    for it) and a long value."""
    rng = random.Random(3)
    tags = {
        "tags-nul": b'[{"key": "ok", "value": "yes"}, {"key": "nul", "value": "a\\u0000b"}]',
        "tags-surrogate": b'[{"key": "half", "value": "\\ud800"}]',
        "tags-long": b'[{"key": "long", "value": "' + b"x" * 100_000 + b'"}]',
    }
    messages = []
    for host, raw in tags.items():
        document = synthetic_document(host, now, rng)
        value = orjson.dumps(document)[:-1] + b', "tags": ' + raw + b"}"
        messages.append(Message(key=host.encode(), value=value, event_id=document["event_id"]))
    return messages


async def exact_windows(dsn: str) -> dict[tuple[str, str, datetime], dict[str, Any]]:
    """(host, API window, start) -> the window computed exactly from silver's rows."""
    database = await asyncpg.connect(dsn)
    try:
        rows = await database.fetch(
            "SELECT host_id, sample_time, cpu_percent, memory_percent, disk_max_percent, "
            "net_bytes_sent_delta, net_bytes_recv_delta FROM silver.silver_performance"
        )
    finally:
        await database.close()
    grouped: dict[tuple[str, str, datetime], list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        for api, name in API_WINDOWS.items():
            start = window_start(r["sample_time"].timestamp(), WINDOW_SIZES_S[name])
            grouped[r["host_id"], api, datetime.fromtimestamp(start, UTC)].append(r)
    return {
        key: {
            "sample_count": len(group),
            "cpu_avg_percent": sum(r["cpu_percent"] for r in group) / len(group),
            "cpu_max_percent": max(r["cpu_percent"] for r in group),
            "cpu_p95_percent": exact_quantile([r["cpu_percent"] for r in group], 0.95),
            "memory_avg_percent": sum(r["memory_percent"] for r in group) / len(group),
            "memory_max_percent": max(r["memory_percent"] for r in group),
            "memory_p95_percent": exact_quantile([r["memory_percent"] for r in group], 0.95),
            "disk_max_percent": max(r["disk_max_percent"] for r in group),
            "net_bytes_sent": sum(r["net_bytes_sent_delta"] for r in group),
            "net_bytes_recv": sum(r["net_bytes_recv_delta"] for r in group),
        }
        for key, group in grouped.items()
    }


def window_differences(answer: dict[str, Any], exact: dict[str, Any]) -> list[str]:
    """What differs between a window the API answered and silver's exact values."""
    differences = []
    for column, want in exact.items():
        got = answer[column]
        if column.endswith("_p95_percent"):
            same = within_sketch_bound(got, want)
        elif column.endswith("_avg_percent"):
            same = math.isclose(got, want, rel_tol=1e-12)
        else:
            same = got == want
        if not same:
            differences.append(f"{column} {got!r} != {want!r}")
    return differences


async def test_any_worker_answers_any_host_as_its_owner_with_silvers_values(
    stack_settings: AllSettings, processes: Processes, tmp_path: Path
):
    """Two workers under a stream: every host's lookups, asked of either worker, give
    the same answer, served by the one worker that owns the host (the token passed on
    to it); closed windows hold
    silver's exact count, average and maximum, and p95 within the sketch's bound."""
    # With the token set: a routed request must carry it on to the owner.
    first = await own_settings(stack_settings, tmp_path / "first", web_token=SecretStr(TOKEN))
    second = first.model_copy(update={"data_dir": tmp_path / "second", "web_port": free_port()})
    now = datetime.now(UTC)
    records = stream(now, seed=2)
    await ensure_topics(first)
    processes.start(settings_env(first), "worker", name="first")
    await produce(first, records[: len(records) // 2])
    second_worker = processes.start(settings_env(second), "worker", name="second")
    await produce(first, records[len(records) // 2 :])

    async def both_read() -> bool:
        return all("reading from" in processes.log(name) for name in ("first", "second"))

    await eventually(both_read, what="both workers to get partitions")
    await eventually(
        lambda: committed_up_to_end(first), timeout_s=90, what="the stream to be processed"
    )
    workers = [base_url(first), base_url(second)]

    async def both_ready() -> bool:
        return all([(await get(f"{w}/ready", None))[0] == 200 for w in workers])

    # Until then an owner still reading its state from the changelog answers 503.
    await eventually(both_ready, what="both workers to have recovered their tables")

    since, to = iso(now - timedelta(hours=3)), iso(now + timedelta(minutes=1))
    exact = await exact_windows(first.postgres_dsn.get_secret_value())
    owners: dict[str, str] = {}
    problems = []
    for h in range(HOSTS):
        host = f"host-{h:02d}"
        for path, params in [
            ("latest", {}),
            *((f"windows/{api}", {"from": since, "to": to}) for api in API_WINDOWS),
        ]:
            answers = [await get(f"{w}/api/hosts/{host}/{path}", **params) for w in workers]
            assert answers[0] == answers[1], (host, path)
            status, answer = answers[0]
            assert status == 200, (host, path, answer)
            assert isinstance(answer, dict)
            owners[host] = answer["served_by"]
            if path == "latest":
                assert answer["tags"] == {"team": f"t{h % 3}"}
                assert answer["sample_time"] == iso(now.replace(microsecond=now.microsecond))
                continue
            api = path.rsplit("/", 1)[1]
            windows = answer["windows"]
            wanted = sorted(start for (name, kind, start) in exact if (name, kind) == (host, api))
            assert [w["window_start"] for w in windows] == [iso(s) for s in wanted], (host, api)
            closed = [w for w in windows if w["final"]]
            assert closed, (host, api)
            for w in closed:
                start = datetime.fromisoformat(w["window_start"])
                if differences := window_differences(w, exact[host, api, start]):
                    problems.append(f"{host} {api} {w['window_start']}: {differences}")
    assert not problems, "\n".join(problems[:20])
    assert set(owners.values()) == set(workers), "each worker owns some hosts and says so"

    # An owner gone: its hosts get 503 at once, then the survivor takes them over.
    orphan = next(host for host, owner in owners.items() if owner == workers[1])
    second_worker.send_signal(signal.SIGKILL)
    second_worker.wait()
    status, answer = await get(f"{workers[0]}/api/hosts/{orphan}/latest")
    assert status == 503, answer
    assert "the worker that owns this host did not answer" in answer["error"]

    async def taken_over() -> Any:
        answer = await get(f"{workers[0]}/api/hosts/{orphan}/windows/5m", **{"from": since})
        return answer[0] == 200 and answer

    _, answer = await eventually(taken_over, what="the survivor to answer for the orphan")
    assert answer["served_by"] == workers[0]


async def test_the_token_guards_every_page_but_the_probes(served: AllSettings):
    url = base_url(served)
    assert (await get(f"{url}/api/hosts", token=None))[0] == 401
    assert (await get(f"{url}/api/hosts", token="wrong"))[0] == 401
    assert (await get(f"{url}/api/hosts", token=TOKEN + "x"))[0] == 401
    status, answer = await get(f"{url}/api/hosts")
    assert status == 200
    assert isinstance(answer, dict)
    hosts = {h["host_id"]: h for h in answer["hosts"]}
    assert set(hosts) >= {f"host-{h:02d}" for h in range(HOSTS)}
    assert hosts["host-01"]["tags"] == {"team": "t1"}
    for probe in ("/health", "/ready"):
        assert (await get(f"{url}{probe}", token=None))[0] == 200, probe
    # Faust's pages that list table contents: behind the token, and off.
    # "/" is the dashboard's page, open: it holds no data (test_dashboard.py).
    for page in ("/router/", "/table/gold_hosts/", "/stats/", "/metrics"):
        assert (await get(f"{url}{page}", token=None))[0] == 401, page
    for page in ("/router/", "/table/gold_hosts/"):
        status, answer = await get(f"{url}{page}")
        assert status == 404, (page, answer)
    # Routing to the owner keeps the token: a one-worker group owns every host.
    status, answer = await get(f"{url}/api/hosts/host-01/latest")
    assert status == 200
    assert isinstance(answer, dict)
    assert answer["served_by"] == url


async def test_bad_parameters_get_400_with_a_message(served: AllSettings):
    windows = f"{base_url(served)}/api/hosts/host-01/windows"
    now = datetime.now(UTC)
    cases = {
        "unknown window": (f"{windows}/7m", {}),
        "from after to": (f"{windows}/5m", {"from": iso(now), "to": iso(now - timedelta(1))}),
        "bad timestamp": (f"{windows}/5m", {"from": "yesterday"}),
        "no time zone": (f"{windows}/5m", {"from": "2026-11-29T10:00:00"}),
        "range too long": (f"{windows}/1h", {"from": iso(now - timedelta(days=30))}),
        "bad since": (f"{base_url(served)}/api/anomalies", {"since": "2026-13-01T00:00:00Z"}),
        "since too old": (f"{base_url(served)}/api/anomalies", {"since": "2000-01-01T00:00:00Z"}),
    }
    for case, (url, params) in cases.items():
        status, answer = await get(url, **params)
        assert status == 400, (case, answer)
        assert isinstance(answer, dict)
        assert answer["error"], case
    status, answer = await get(f"{windows}/7m")
    assert isinstance(answer, dict)
    assert answer["error"] == "unknown window '7m': use one of 5m, 1h"


async def test_unknown_and_hostile_host_ids_get_404_never_500(served: AllSettings):
    url = f"{base_url(served)}/api/hosts"
    hostile = [
        "no-such-host",
        "%00",
        "host%00-01",
        "%FF%FE",
        "%ED%A0%80",  # a lone surrogate in UTF-8
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "x" * 300,
        "%0Ahost",
    ]
    for host in hostile:
        for path in ("latest", "windows/5m"):
            status, answer = await get(f"{url}/{host}/{path}")
            assert status == 404, (host, path, answer)
    # A path a server must refuse before any route: too long for a request line.
    status, _ = await get(f"{url}/{'x' * 2_000_000}/latest")
    assert 400 <= status < 500
    for raw in ("../../etc/passwd", "..%2F..%2Fapi%2Fhosts"):
        status, _ = await get(f"{url}/{raw}/latest")
        assert status in (401, 404), raw


async def test_anomalies_are_the_flagged_windows(served: AllSettings):
    status, answer = await get(f"{base_url(served)}/api/anomalies")
    assert status == 200
    assert isinstance(answer, dict)
    flagged = answer["anomalies"]
    assert flagged, "cpu drawn 0-100 puts some window's p95 over 90"
    assert all(w["cpu_anomaly"] or w["memory_anomaly"] or w["disk_anomaly"] for w in flagged)
    assert {w["window"] for w in flagged} <= set(API_WINDOWS)


async def test_the_openapi_document_matches_the_routes_and_the_answers(served: AllSettings):
    url = base_url(served)
    status, document = await get(f"{url}/api/openapi.json")
    assert status == 200
    assert isinstance(document, dict)
    async with aiohttp.ClientSession() as session:
        # Every lookup documented answers.
        for path, methods in document["paths"].items():
            if "get" not in methods:
                continue
            probe = path.replace("{host}", "host-01").replace("{window}", "5m")
            async with session.get(
                f"{url}{probe}", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as response:
                assert response.status == 200, path

    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            database=None,
        )
        @hypothesis.given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                # The document cannot say "from before to" or "a range of at most
                # api_max_range_s": a schema-valid request may get its documented 400.
                excluded_checks=[schemathesis.checks.positive_data_acceptance],
            )

        check()


async def test_the_openapi_document_lists_exactly_the_routes_under_api(served: AllSettings):
    database = await MedallionDb.open(served.postgres_dsn.get_secret_value())
    try:
        app = build_worker(served, database)
        served_paths = {
            resource.canonical
            for resource in cast(AiohttpWeb, app.web).web_app.router.resources()
            if resource.canonical.startswith("/api/")
        }
    finally:
        await database.close()
    assert served_paths == set(openapi_document("http://127.0.0.1")["paths"])


async def test_tags_postgresql_cannot_store_are_left_out_and_nothing_stops(served: AllSettings):
    status, answer = await get(f"{base_url(served)}/api/hosts")
    assert status == 200
    assert isinstance(answer, dict)
    tags = {h["host_id"]: h["tags"] for h in answer["hosts"] if h["host_id"].startswith("tags-")}
    assert tags["tags-nul"] == {"ok": "yes"}
    assert tags["tags-long"] == {"long": "x" * 100_000}
    # Silver may refuse a lone surrogate; if it keeps the sample, the tags are left out.
    assert tags.get("tags-surrogate", {}) == {}


def postgres_processes(settings: AllSettings) -> list[int]:
    """The session's PostgreSQL: its postmaster and every backend it forked."""
    pid_file = settings.stack_dir / "postgres" / "data" / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [postmaster, *map(int, children)]


async def test_a_stopped_postgresql_gets_503_in_seconds_not_a_hung_request(served: AllSettings):
    url = base_url(served)
    # Stopped, not gone: connections stay open and nothing answers on them, the worst
    # case for a client (a dead server refuses connections at once).
    stopped = postgres_processes(served)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        for path in ("/api/hosts", "/api/hosts/host-01/latest", "/api/hosts/host-01/windows/5m"):
            started = time.monotonic()
            status, answer = await get(f"{url}{path}")
            assert status == 503, (path, answer)
            assert "PostgreSQL did not answer" in answer["error"], path
            assert time.monotonic() - started < 9, path
        assert (await get(f"{url}/health", token=None))[0] == 200
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)

    async def answering_again() -> bool:
        return (await get(f"{url}/api/hosts/host-01/latest"))[0] == 200

    await eventually(answering_again, what="lookups to answer once PostgreSQL is back")
