"""Alerts on a real worker: gold's closed windows become events on ``<topic>.alerts`` and
messages to a Slack webhook (here a local HTTP server that records what it is sent):
one when a host's metric enters anomaly, one when it resolves, none for old data or a
replay, all of them after a webhook outage; and ``hoststream alerts test``."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from app.preflight import alerts_topic, ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from schemas.alerts import AlertEvent, slack_message
from schemas.windows import window_start
from sinks.slack import SlackWebhook
from tests.integration.fixtures import (
    Processes,
    committed_up_to_end,
    eventually,
    read_topic,
    run_command,
    settings_env,
)
from tests.integration.gold_check import Message, produce, sample_message
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration

STEP_S = 10
GRACE_S = 5.0
HOST_INTERVAL_S = 3.0


class Webhook:
    """A stand-in for Slack's incoming webhook on 127.0.0.1: records each message it
    takes; answers ``status`` (503: an outage) or refuses connections once stopped."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.taken_at: list[float] = []
        """``time.monotonic()`` of each message taken."""
        self.refused = 0
        self.status = 200
        self.refuse_blocks = False
        """Answer 400 invalid_blocks to a message with blocks, as Slack does to one it
        finds malformed."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/services/T0/B0/secret"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/services/T0/B0/secret", self._take)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.status != 200:
            self.refused += 1
            return web.Response(status=self.status, text="service unavailable")
        if "blocks" in body and self.refuse_blocks:
            self.refused += 1
            return web.Response(status=400, text="invalid_blocks")
        self.messages.append(body)
        self.taken_at.append(time.monotonic())
        return web.Response(text="ok")

    def lines(self) -> list[str]:
        """Every alert line posted, in order (a message holds a line per event)."""
        return [
            line
            for message in self.messages
            for line in message["blocks"][1]["text"]["text"].splitlines()
        ]


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    await hook.start()
    yield hook
    await hook.stop()


def alert_settings(settings: AllSettings, webhook: Webhook) -> AllSettings:
    return settings.model_copy(
        update={
            "lake_enabled": False,
            "gold_grace_s": GRACE_S,
            "gold_upsert_interval_s": 0.5,
            "slack_webhook_url": SecretStr(webhook.url),
            "alerts_host_interval_s": HOST_INTERVAL_S,
            "alerts_quiet_after_s": 1800.0,
        }
    )


def host_stream(host: str, first_window_s: int, cpu_by_window: list[float]) -> list[Message]:
    """A sample of ``host`` every STEP_S, each 5-minute window at its CPU (memory and disk
    at 50 %), then into the next window past the last one's end plus the grace, so it
    closes."""
    rng = random.Random(host)
    moments = [
        (first_window_s + 300 * w + STEP_S * k, cpu)
        for w, cpu in enumerate(cpu_by_window)
        for k in range(300 // STEP_S)
    ]
    end = first_window_s + 300 * len(cpu_by_window)
    moments += [(end + STEP_S * k, 5.0) for k in range(int(GRACE_S // STEP_S) + 2)]
    messages = []
    for t, cpu in moments:
        document = synthetic_document(host, datetime.fromtimestamp(t, tz=UTC), rng, STEP_S)
        document["cpu"] = {"percent": cpu, "per_core_percent": [cpu, cpu]}
        memory = document["memory"]
        memory["used_bytes"] = memory["available_bytes"] = memory["total_bytes"] // 2
        memory["percent"] = 50.0
        disk = document["disks"][0]
        disk["used_bytes"] = disk["free_bytes"] = disk["total_bytes"] // 2
        disk["percent"] = 50.0
        messages.append(sample_message(document))
    return messages


def recent_start() -> int:
    """Start of the window three windows before the current one: the stream of
    :func:`host_stream` with three windows then ends a few seconds into the current one."""
    return window_start(time.time(), 300) - 900


async def alert_events(settings: AllSettings) -> list[AlertEvent]:
    topic = settings.model_copy(update={"topic": alerts_topic(settings)})
    return [AlertEvent.decode(value) for *_, value in await read_topic(topic)]


async def notifier_committed(settings: AllSettings) -> bool:
    """Whether the notifier's group committed every partition of the alerts topic to
    its end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{settings.app_id}-alerts")
        partitions = [
            TopicPartition(alerts_topic(settings), p) for p in range(settings.topic_partitions)
        ]
        end = await consumer.end_offsets(partitions)
        return all(tp in committed and committed[tp].offset >= end[tp] for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


def summary(events: list[AlertEvent], first_window_s: int) -> list[tuple[str, str, str, int, bool]]:
    return [
        (
            e.host_id,
            e.metric,
            e.kind,
            (int(e.window_start.timestamp()) - first_window_s) // 300,
            e.stale,
        )
        for e in events
    ]


async def test_two_windows_above_the_cpu_threshold_then_back_post_one_firing_and_one_resolved(
    pipeline_settings: AllSettings, processes: Processes, webhook: Webhook
):
    settings = alert_settings(pipeline_settings, webhook)
    env = settings_env(settings)
    await ensure_topics(settings)
    start = recent_start()
    fresh = host_stream("web-1", start, [97.0, 97.0, 12.0])
    # The same pattern three hours ago: a replay of old data, on the topic but quiet.
    old_start = start - 3 * 3600
    old = host_stream("old-1", old_start, [97.0, 97.0, 12.0])
    # As it happens live: the first two windows, whose first closes anomalous; later
    # the rest, whose clean window resolves it (together they would make one message).
    split = 2 * 300 // STEP_S
    await produce(settings, old + fresh[:split])
    processes.start(env, "worker", name="worker")
    await eventually(lambda: _true(len(webhook.messages) >= 1), what="a first Slack message")
    await produce(settings, fresh[split:])
    await eventually(lambda: _true(len(webhook.messages) >= 2), what="a second Slack message")
    await eventually(lambda: committed_up_to_end(settings), what="the stream to be committed")
    await eventually(lambda: notifier_committed(settings), what="the notifier to commit")
    lines = webhook.lines()
    assert len(webhook.messages) == 2, webhook.messages
    assert lines[0].startswith("FIRING cpu: CPU p95 97.0 % > 90.0 %"), lines
    assert lines[1].startswith("RESOLVED cpu: CPU p95 12.0 % <= 90.0 %"), lines
    assert all("web-1" in m["text"] for m in webhook.messages)
    # The resolved event came within the host's interval: it waited for it.
    assert webhook.taken_at[1] - webhook.taken_at[0] >= HOST_INTERVAL_S - 0.1
    events = await alert_events(settings)
    by_host = {
        host: summary([e for e in events if e.host_id == host], s)
        for host, s in (("web-1", start), ("old-1", old_start))
    }
    assert by_host == {
        "web-1": [("web-1", "cpu", "firing", 0, False), ("web-1", "cpu", "resolved", 2, False)],
        "old-1": [("old-1", "cpu", "firing", 0, True), ("old-1", "cpu", "resolved", 2, True)],
    }

    # The same hour produced again: copies of samples silver has, no new event or message.
    await produce(settings, old + fresh)
    await eventually(lambda: committed_up_to_end(settings), what="the replay to be committed")
    # Events derived again after a crash (same ids) reach a restarted notifier, which
    # remembers the ids it saw from the topic.
    processes.stop_all()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                alerts_topic(settings), event.encode(), key=event.host_id.encode()
            )
    finally:
        await producer.stop()
    processes.start(env, "worker", name="worker-again")
    await eventually(lambda: notifier_committed(settings), what="the notifier to commit again")
    await asyncio.sleep(HOST_INTERVAL_S + 1)
    assert len(webhook.messages) == 2, webhook.messages[2:]
    assert len(await alert_events(settings)) == 2 * len(events)


async def test_a_webhook_down_for_30_s_delays_the_messages_and_loses_none(
    pipeline_settings: AllSettings, processes: Processes, webhook: Webhook
):
    settings = alert_settings(pipeline_settings, webhook)
    await ensure_topics(settings)
    webhook.status = 503
    start = recent_start()
    stream = host_stream("db-1", start, [97.0, 97.0, 12.0])
    await produce(settings, stream)
    processes.start(settings_env(settings), "worker", name="worker")

    await eventually(lambda: _true(webhook.refused > 0), what="a first refused post")
    down_at = time.monotonic()
    # The pipeline goes on meanwhile: every sample in silver, every offset committed.
    database = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:

        async def silver_complete() -> bool:
            count = await database.fetchval("SELECT count(*) FROM silver.silver_performance")
            return bool(count == len(stream))

        await eventually(silver_complete, what="silver to hold the stream during the outage")
    finally:
        await database.close()
    await eventually(lambda: committed_up_to_end(settings), what="commits during the outage")
    assert webhook.messages == []
    # /metrics says what waits and for how long.
    figures = await alert_figures(settings)
    assert figures["hoststream_alert_events_waiting"] >= 1, figures
    assert figures["hoststream_alert_webhook_failing_seconds"] > 0, figures
    assert figures["hoststream_alert_messages_posted_total"] == 0, figures
    assert figures['hoststream_alert_events_total{kind="firing",stale="false"}'] == 1, figures
    # Then the webhook goes away altogether: connections refused.
    await asyncio.sleep(max(0.0, 12 - (time.monotonic() - down_at)))
    await webhook.stop()
    await asyncio.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
    webhook.status = 200
    await webhook.start()
    await eventually(
        lambda: _true(len(webhook.lines()) >= 2), timeout_s=90, what="the messages after it"
    )
    await asyncio.sleep(HOST_INTERVAL_S + 1)
    lines = webhook.lines()
    assert [line.split(":")[0] for line in lines] == ["FIRING cpu", "RESOLVED cpu"], lines
    assert webhook.refused >= 3
    figures = await alert_figures(settings)
    assert figures["hoststream_alert_events_waiting"] == 0, figures
    assert figures["hoststream_alert_webhook_failing_seconds"] == 0, figures
    assert figures["hoststream_alert_events_posted_total"] == 2, figures
    log = processes.log("worker")
    assert "HTTP 503" in log
    assert "Cannot connect to host 127.0.0.1" in log
    assert "secret" not in log  # the webhook URL's path: never logged


async def alert_figures(settings: AllSettings) -> dict[str, float]:
    """The worker's ``hoststream_alert*`` figures from ``/metrics``, by sample name."""
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines())
        if name.startswith("hoststream_alert")
    }


async def test_a_message_slack_refuses_as_malformed_goes_as_text_and_holds_up_nothing(
    webhook: Webhook,
):
    webhook.refuse_blocks = True
    hook = SlackWebhook(webhook.url, first_backoff_s=0.1)
    try:
        events = [
            AlertEvent.decode(
                b'{"schema_version": 1, "event_id": "h|cpu|firing|0", "host_id": "<!channel>",'
                b' "metric": "cpu", "kind": "firing", "window_start": "2026-11-30T00:00:00Z",'
                b' "window_end": "2026-11-30T00:05:00Z", "since": "2026-11-30T00:00:00Z",'
                b' "value_percent": 97.0, "threshold_percent": 90.0, "stale": false}'
            )
        ]
        await asyncio.wait_for(hook.post(slack_message("<!channel>", events, "")), timeout=10)
    finally:
        await hook.close()
    assert webhook.refused == 1
    [message] = webhook.messages
    assert set(message) == {"text"}
    assert message["text"].startswith("&lt;!channel&gt;: FIRING cpu")


async def test_alerts_test_posts_once_fails_in_one_line_or_says_nothing_is_set(
    stack_settings: AllSettings, webhook: Webhook
):
    env = settings_env(stack_settings)

    async def alerts_test(url: str) -> Any:
        # In a thread: the webhook answers from this test's loop.
        variables = {**env, "HOSTSTREAM_SLACK_WEBHOOK_URL": url}
        return await asyncio.to_thread(run_command, variables, "alerts", "test")

    done = await alerts_test(webhook.url)
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "hoststream: the Slack webhook took the test message",
    ), done.stderr
    assert len(webhook.messages) == 1
    assert "hoststream test message" in webhook.messages[0]["text"]

    webhook.status = 503
    done = await alerts_test(webhook.url)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "hoststream: the Slack webhook did not take the test message (3 tries): "
        "HTTP 503 'service unavailable'"
    ]
    assert webhook.refused == 3

    closed = f"http://127.0.0.1:{free_port()}/services/T0/B0/secret"
    done = await alerts_test(closed)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("hoststream: the Slack webhook did not take the test message")
    assert "Cannot connect" in line
    assert "secret" not in line

    done = await alerts_test("")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "hoststream: HOSTSTREAM_SLACK_WEBHOOK_URL is not set: no webhook to test"
    ]
    assert len(webhook.messages) == 1


async def _true(value: object) -> bool:
    return bool(value)
