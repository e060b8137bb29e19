"""/metrics, /health, /ready and ``hoststream status`` on real workers under a stream:
the exposition parses as Prometheus reads it and its counters follow the records
sent; the probes answer without the API's token; status prints the deployment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from tests.hostile import Forge
from tests.integration.fixtures import Processes, eventually, run_command, settings_env
from tests.integration.gold_check import Message, produce, sample_message
from tests.integration.test_ingest import wait_until_ready
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration

API_TOKEN = "api-secret"
GOOD, WRONG_KEY, NOT_JSON, DUPLICATES = 200, 20, 10, 5

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def url(settings: AllSettings) -> str:
    return f"http://{settings.web_host}:{settings.web_port}"


async def get(session: aiohttp.ClientSession, address: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(address, headers=headers) as response:
            return response.status, await response.read()
    except aiohttp.ClientConnectionError:
        return None, b""


async def scrape(session: aiohttp.ClientSession, settings: AllSettings) -> Samples:
    status, body = await get(session, f"{url(settings)}/metrics", API_TOKEN)
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def stream(now: datetime) -> list[Message]:
    rng = random.Random(20)
    hosts = [f"metrics-{n}" for n in range(10)]
    good = [
        sample_message(synthetic_document(hosts[n % 10], now - timedelta(seconds=GOOD - n), rng))
        for n in range(GOOD)
    ]
    forge = Forge(rng, hosts, now)
    bad = [Message(*forge.wrong_key(), kind="wrong key") for _ in range(WRONG_KEY)]
    bad += [Message(hosts[0].encode(), b"{oops", kind="not JSON") for _ in range(NOT_JSON)]
    return good + bad + good[:DUPLICATES]


async def test_metrics_and_probes_follow_a_stream_and_status_shows_the_workers(
    pipeline_settings: AllSettings, processes: Processes, tmp_path: Path
):
    # One partition, so that of two workers one is idle: it must say it is not ready.
    settings = pipeline_settings.model_copy(
        update={"web_token": SecretStr(API_TOKEN), "topic_partitions": 1}
    )
    await ensure_topics(settings)
    processes.start(settings_env(settings), "worker", name="worker")
    async with aiohttp.ClientSession() as session:

        async def health() -> bool:
            return (await get(session, f"{url(settings)}/health"))[0] == 200

        await eventually(health, what="/health to answer")

        answer = await wait_until_ready(settings, session)
        assert answer["ready"] is True
        assert answer["partitions"] == [0]
        assert answer["workers"] == {url(settings): [0]}

        # /metrics is the API's: the token is required.
        assert (await get(session, f"{url(settings)}/metrics"))[0] == 401
        lag = ("hoststream_consumer_lag_records", (("partition", "0"), ("topic", settings.topic)))

        async def lag_known() -> Samples | None:
            samples = await scrape(session, settings)
            return samples if lag in samples else None

        # Known before any record was acknowledged: a worker stuck on its first batch has one.
        before = await eventually(lag_known, what="the lag of the idle partition")
        assert before[lag] == 0
        assert before[("hoststream_records_rejected_total", (("reason_class", "key"),))] == 0

        await produce(settings, stream(datetime.now(UTC)))
        total = GOOD + WRONG_KEY + NOT_JSON + DUPLICATES

        async def moved() -> Samples | None:
            now = await scrape(session, settings)
            return now if now[("hoststream_records_acknowledged_total", ())] >= total else None

        after = await eventually(moved, what="the counters to count every record")
        for agent in ("store_raw_records", "validate_samples", "aggregate_windows"):
            assert after[("hoststream_records_in_total", (("agent", agent),))] == total
        assert ("hoststream_lake_pending_bytes", ()) in after
        assert after[("hoststream_records_out_total", (("agent", "store_raw_records"),))] == total
        assert after[("hoststream_records_out_total", (("agent", "validate_samples"),))] == GOOD
        assert after[("hoststream_records_rejected_total", (("reason_class", "key"),))] == (
            WRONG_KEY
        )
        assert after[("hoststream_records_rejected_total", (("reason_class", "not_json"),))] == (
            NOT_JSON
        )
        assert after[("hoststream_duplicates_total", ())] == DUPLICATES
        assert after[("hoststream_late_samples_total", ())] == 0
        assert after[lag] == 0
        assert after[("hoststream_seconds_since_last_commit", ())] < 60
        flushed = after[("hoststream_sink_flush_rows_sum", (("sink", "bronze"),))]
        assert flushed == total
        assert after[("hoststream_sink_flush_seconds_count", (("sink", "gold_5min"),))] >= 1

        # A second worker: the group's one partition is the other's; it is not ready.
        second = settings.model_copy(
            update={"web_port": free_port(), "data_dir": tmp_path / "worker-2"}
        )
        processes.start(settings_env(second), "worker", name="worker-2")

        async def both_listed() -> bool:
            answers = [await get(session, f"{url(s)}/ready") for s in (settings, second)]
            statuses = sorted(status or 0 for status, _ in answers)
            workers = [len(orjson.loads(body).get("workers", {})) for _, body in answers if body]
            return statuses == [200, 503] and workers == [2, 2]

        await eventually(both_listed, timeout_s=90, what="two workers, one of them idle")

    env = settings_env(settings)
    for worker in (settings, second):
        shown = run_command(env, "status", "--url", url(worker), timeout_s=30)
        assert shown.returncode == 0, shown.stderr
        assert "workers  2: " in shown.stdout, shown.stdout
        assert f"{url(settings)} [" in shown.stdout
        assert "lag      " in shown.stdout
    idle = [
        run_command(env, "status", "--url", url(w), timeout_s=30).stdout for w in (settings, second)
    ]
    assert sum("NOT READY: no partition of" in text for text in idle) == 1, idle

    refused = run_command(
        {**env, "HOSTSTREAM_WEB_TOKEN": "wrong"}, "status", "--url", url(settings)
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"hoststream: the worker at {url(settings)} refused the token: "
        "set HOSTSTREAM_WEB_TOKEN to its token"
    ]


def test_status_against_nothing_says_so_in_one_line(stack_settings: AllSettings):
    address = f"http://127.0.0.1:{free_port()}"
    done = run_command(settings_env(stack_settings), "status", "--url", address)
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"hoststream: no hoststream worker answers at {address}")
