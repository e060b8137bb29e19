"""HTTP ingest on a real worker, Kafka and PostgreSQL: each kind of body gets its
status, nothing of a refused request reaches Kafka, and every accepted sample is in
silver exactly once (a resent one too)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from pydantic import SecretStr

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from tests.hostile import BAD_KINDS, Forge
from tests.integration.fixtures import Processes, eventually, read_topic, settings_env

pytestmark = pytest.mark.integration

INGEST_TOKEN = "ingest-secret"
API_TOKEN = "api-secret"
MAX_BODY_BYTES = 64_000


def base_url(settings: AllSettings) -> str:
    return f"http://{settings.web_host}:{settings.web_port}"


async def wait_until_ready(settings: AllSettings, session: aiohttp.ClientSession) -> dict[str, Any]:
    """The worker's first 200 answer at ``/ready``."""

    async def ready() -> dict[str, Any] | None:
        try:
            async with session.get(f"{base_url(settings)}/ready") as response:
                return await response.json() if response.status == 200 else None
        except aiohttp.ClientConnectionError:
            return None

    answer: dict[str, Any] = await eventually(ready, timeout_s=90, what="the worker to be ready")
    return answer


async def post(
    session: aiohttp.ClientSession,
    settings: AllSettings,
    body: Any,
    token: str | None = INGEST_TOKEN,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with session.post(
        f"{base_url(settings)}/api/ingest", data=body, headers=headers
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_each_kind_of_body_gets_its_status_and_accepted_samples_reach_silver_once(
    pipeline_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings.model_copy(
        update={
            "ingest_token": SecretStr(INGEST_TOKEN),
            "web_token": SecretStr(API_TOKEN),
            "ingest_max_body_bytes": MAX_BODY_BYTES,
        }
    )
    await ensure_topics(settings)
    processes.start(settings_env(settings), "worker", name="worker")
    rng = random.Random(19)
    now = datetime.now(UTC)
    hosts = [f"ingest-{n}" for n in range(5)]
    good = [
        synthetic_document(hosts[n % 5], now - timedelta(seconds=60 - n), rng) for n in range(41)
    ]
    async with aiohttp.ClientSession() as session:
        await wait_until_ready(settings, session)

        # Who may send: only the ingest token, never the API's or none.
        one = orjson.dumps(good[0])
        for token in (None, "wrong", API_TOKEN, INGEST_TOKEN[:-1]):
            status, answer = await post(session, settings, one, token=token)
            assert (status, "ingest token" in answer["error"]) == (401, True), token

        # Bodies that hold no samples to check: 4xx with one line, never 500.
        for body, content_type, expected in [
            (one, "text/plain", 415),
            (one, "application/x-www-form-urlencoded", 415),
            (b"", "application/json", 400),
            (b"[]", "application/json", 400),
            (b"hello", "application/json", 400),
            (b"[" + one + b",", "application/json", 400),
            (b"null", "application/json", 400),
            (b"{not json", "application/json", 422),
            (b'{"schema_version": 1}', "application/json", 422),
        ]:
            status, answer = await post(session, settings, body, content_type=content_type)
            assert status == expected, (body[:40], answer)

        # Too large, announced or not (chunked): 413 before the body is read whole.
        padded = orjson.dumps(good[:1] * 120)
        assert len(padded) > MAX_BODY_BYTES
        status, answer = await post(session, settings, padded)
        assert (status, answer) == (
            413,
            {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"},
        )

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b" " * 4096

        status, _ = await post(session, settings, chunks())
        assert status == 413

        # Hostile samples, in arrays with good ones: 422 naming each bad one, none sent.
        forge = Forge(rng, hosts, now)
        for kind, (_, make) in BAD_KINDS.items():
            if kind == "key is not host_id":
                continue  # over HTTP the ingest keys each sample by its host_id itself
            bad = [value for _, value in (make(forge) for _ in range(30)) if is_object(value)]
            if not bad:
                continue
            body = b"[" + b",".join([orjson.dumps(good[1]), *bad[:10]]) + b"]"
            if len(body) > MAX_BODY_BYTES:
                continue
            status, answer = await post(session, settings, body)
            assert status == 422, (kind, answer)
            assert [r["index"] for r in answer["rejected"]] == list(range(1, len(bad[:10]) + 1))
            assert answer["accepted"] == 0

        # Good: one sample, then an array; then one of them again (a client's retry).
        status, answer = await post(session, settings, orjson.dumps(good[0]))
        assert (status, answer) == (202, {"accepted": 1, "rejected": []})
        status, answer = await post(session, settings, orjson.dumps(good[1:]))
        assert (status, answer) == (202, {"accepted": 40, "rejected": []})
        status, answer = await post(session, settings, orjson.dumps(good[7]))
        assert status == 202

    # Only the accepted requests reached Kafka, keyed by host, as sent.
    produced = await read_topic(settings)
    assert sorted(value for *_, value in produced) == sorted(
        [orjson.dumps(d) for d in good] + [orjson.dumps(good[7])]
    )
    assert all(key == orjson.loads(value)["host_id"].encode() for _, _, key, value in produced)

    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:

        async def silver() -> list[str] | None:
            try:
                rows = await database.fetch("SELECT event_id FROM silver.silver_performance")
            except asyncpg.UndefinedTableError:
                return None
            return [r["event_id"] for r in rows] if len(rows) >= len(good) else None

        await eventually(silver, what="silver to hold every accepted sample")
        assert sorted(await silver() or []) == sorted(d["event_id"] for d in good)
        rejected = await database.fetchval("SELECT count(*) FROM silver.rejected")
        assert rejected == 0
    finally:
        await database.close()


async def test_without_an_ingest_token_ingest_is_off_and_says_so(
    pipeline_settings: AllSettings, processes: Processes
):
    settings = pipeline_settings
    await ensure_topics(settings)
    processes.start(settings_env(settings), "worker", name="worker")
    async with aiohttp.ClientSession() as session:
        await wait_until_ready(settings, session)
        document = synthetic_document("off-host", datetime.now(UTC), random.Random(1))
        for token in (None, "anything", ""):
            status, answer = await post(session, settings, orjson.dumps(document), token=token)
            assert status == 404
            assert answer == {
                "error": "HTTP ingest is off: the worker has no HOSTSTREAM_INGEST_TOKEN"
            }
    assert await read_topic(settings) == []


def is_object(value: bytes | None) -> bool:
    try:
        return value is not None and isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False


async def test_a_sample_kafka_would_refuse_as_too_large_gets_413_not_a_retry(
    pipeline_settings: AllSettings, processes: Processes
):
    # The body limit above Kafka's record limit: the record's own size decides.
    settings = pipeline_settings.model_copy(
        update={"ingest_token": SecretStr(INGEST_TOKEN), "ingest_max_body_bytes": 4 * 2**20}
    )
    await ensure_topics(settings)
    processes.start(settings_env(settings), "worker", name="worker")
    rng = random.Random(23)
    now = datetime.now(UTC)
    fits, too_large = (synthetic_document("big-tags", now, rng) for _ in range(2))
    fits["tags"] = [{"key": "blob", "value": "x" * 900_000}]
    too_large["tags"] = [{"key": "blob", "value": "x" * 1_010_000}]
    async with aiohttp.ClientSession() as session:
        await wait_until_ready(settings, session)
        status, answer = await post(session, settings, orjson.dumps([fits, too_large]))
        assert status == 413, answer
        assert answer["rejected"][0]["index"] == 1
        assert "Kafka takes records of" in answer["rejected"][0]["reason"]
        status, answer = await post(session, settings, orjson.dumps(fits))
        assert (status, answer["accepted"]) == (202, 1)
