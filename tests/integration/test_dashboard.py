"""The live dashboard in a real browser (Debian's Chromium, driven by Playwright) against
a real worker: the hosts listed, charts whose points are the API's, the anomaly shaded,
new samples drawn without a reload, the token asked for, a stuck worker shown as stale;
and the samples lookup the charts read."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from pydantic import SecretStr
from yarl import URL

from app.preflight import ensure_topics
from collector.synthetic import synthetic_document
from config import AllSettings
from schemas.api import MAX_SAMPLES, SAMPLE_FIGURES, iso
from schemas.windows import window_start
from tests.integration.fixtures import Processes, committed_up_to_end, eventually, settings_env
from tests.integration.gold_check import Message, produce, sample_message
from tests.integration.test_api import base_url, get, own_settings

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dash/board+token"
"""With characters a URL fragment must carry escaped."""
FRAGMENT_TOKEN = quote(TOKEN, safe="")
HOSTS = ["cache-01", "db-01", "web-01", "web-02"]
HOT = "db-01"
"""The host whose CPU is above the threshold in two 5-minute windows."""
STEP_S = 30
SPAN_S = 55 * 60
WINDOW_S = 300


def sample(host: str, moment: datetime, rng: random.Random, cpu_percent: float) -> Message:
    """A valid sample with the given CPU, and memory and disks below their thresholds."""
    document = synthetic_document(host, moment, rng, interval_s=STEP_S)
    document["cpu"] |= {"percent": cpu_percent, "per_core_percent": [cpu_percent] * 2}
    memory = document["memory"]
    percent = round(rng.uniform(30, 70), 2)
    used = int(memory["total_bytes"] * percent / 100)
    memory |= {
        "percent": percent,
        "used_bytes": used,
        "available_bytes": memory["total_bytes"] - used,
    }
    return sample_message(document)


def hot_windows(now: datetime) -> list[float]:
    """Starts of the two windows in which :data:`HOT` runs hot: 25 to 15 minutes ago."""
    first = window_start((now - timedelta(minutes=25)).timestamp(), WINDOW_S)
    return [first, first + WINDOW_S]


def stream(now: datetime) -> list[Message]:
    """Every host every STEP_S over the last SPAN_S, CPU 5-60 %, :data:`HOT` at 93-99 %
    in :func:`hot_windows`."""
    rng = random.Random(20)
    hot = hot_windows(now)
    messages = []
    for n in range(SPAN_S // STEP_S + 1):
        moment = now - timedelta(seconds=SPAN_S - n * STEP_S)
        for host in HOSTS:
            running_hot = host == HOT and hot[0] <= moment.timestamp() < hot[-1] + WINDOW_S
            cpu = rng.uniform(93, 99) if running_hot else rng.uniform(5, 60)
            messages.append(sample(host, moment, rng, round(cpu, 2)))
    return messages


@dataclass
class Served:
    settings: AllSettings
    worker: subprocess.Popen[bytes]
    now: datetime
    """The time of the stream's newest samples."""

    @property
    def url(self) -> str:
        return base_url(self.settings)


@pytest.fixture(scope="module")
async def served(
    stack_settings: AllSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """A worker with the token set that has consumed :func:`stream`."""
    folder = tmp_path_factory.mktemp("dashboard")
    settings = await own_settings(stack_settings, folder, web_token=SecretStr(TOKEN))
    await ensure_topics(settings)
    now = datetime.now(UTC)
    await produce(settings, stream(now))
    processes = Processes(folder)
    try:
        worker = processes.start(settings_env(settings), "worker", name="worker")
        await eventually(lambda: committed_up_to_end(settings), what="the stream to be processed")

        async def ready() -> bool:
            return (await ask(f"{base_url(settings)}/ready", None))[0] == 200

        await eventually(ready, what="the worker to be ready")
        yield Served(settings, worker, now)
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # Playwright cannot download its own browser here: Debian's; root needs no sandbox.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """A page, with what it logged as errors and the errors it did not catch."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def own_errors(self) -> list[str]:
        """Console errors but the browser's own lines about a refused or failed request."""
        return [e for e in self.console_errors if not e.startswith("Failed to load resource")]


@pytest.fixture
async def watched(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    seen = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
    page.on("request", lambda request: seen.requests.append(request.url))
    try:
        yield seen
    finally:
        await context.close()


async def plotted(page: Page, chart: str) -> dict[str, Any]:
    """What the page drew on ``chart``: series labels, aligned columns, shaded bands."""
    drawn = await page.evaluate("name => window.hoststream.plotted(name)", chart)
    assert drawn, chart
    return dict(drawn)


def line_points(drawn: dict[str, Any], label: str) -> list[tuple[float, float]]:
    """(time, value) of a series where it has a value."""
    column = drawn["data"][drawn["labels"].index(label)]
    return [(x, y) for x, y in zip(drawn["data"][0], column, strict=True) if y is not None]


async def ask(
    url: str, token: str | None = TOKEN, **params: str
) -> tuple[int, dict[str, Any] | str]:
    """GET ``url`` with this module's token: (status, JSON answer or text)."""
    return await get(url, token, **params)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def same_points(drawn: list[tuple[float, float]], wanted: list[tuple[float, float]]) -> bool:
    # The browser parses times to the millisecond.
    return len(drawn) == len(wanted) and all(
        abs(dx - wx) < 1e-3 and dy == wy for (dx, dy), (wx, wy) in zip(drawn, wanted, strict=True)
    )


async def test_the_dashboard_shows_the_hosts_and_charts_that_match_the_api(
    served: Served, watched: Watched, tmp_path: Path
):
    page = watched.page
    await page.goto(f"{served.url}/#token={FRAGMENT_TOKEN}")
    await page.wait_for_function("() => window.hoststream && window.hoststream.state.refreshes > 0")
    assert "token" not in page.url, "the token is taken out of the address bar"

    # The hosts, and the one with the anomaly marked.
    rows = page.locator("#hosts tbody tr")
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.host)") == HOSTS
    marked = await page.locator("#hosts tbody tr.anomalous").evaluate_all(
        "rows => rows.map(r => [r.dataset.host, r.cells[2].textContent])"
    )
    assert marked == [[HOT, "2"]], "two flagged 5-minute windows"

    # Chosen by a click: its charts are the API's samples and windows.
    await page.locator(f'#hosts tbody tr[data-host="{HOT}"]').click()
    await page.wait_for_function(
        "host => document.querySelector('#hosts tr.chosen')?.dataset.host === host"
        " && window.hoststream.state.samples.length > 100",
        arg=HOT,
    )
    status, samples = await ask(f"{served.url}/api/hosts/{HOT}/samples")
    assert status == 200, samples
    assert isinstance(samples, dict)
    status, windows = await ask(
        f"{served.url}/api/hosts/{HOT}/windows/5m", **{"from": iso(served.now - timedelta(hours=1))}
    )
    assert status == 200, windows
    assert isinstance(windows, dict)
    cpu = await plotted(page, "cpu")
    wanted = [(epoch(s["sample_time"]), s["cpu_percent"]) for s in samples["samples"]]
    assert len(wanted) == SPAN_S // STEP_S + 1
    assert same_points(line_points(cpu, "CPU %"), wanted)
    network = await plotted(page, "network")
    wanted = [(epoch(s["sample_time"]), s["net_bytes_recv_per_s"]) for s in samples["samples"]]
    assert same_points(line_points(network, "received/s"), wanted)
    p95 = dict(line_points(cpu, "5-min p95"))
    drawn_windows = [w for w in windows["windows"] if epoch(w["window_start"]) in p95]
    assert len(drawn_windows) >= 11
    for w in drawn_windows:
        assert p95[epoch(w["window_start"])] == w["cpu_p95_percent"], w["window_start"]
    # The anomaly: exactly its two windows are shaded.
    flagged = [[epoch(w["window_start"]), epoch(w["window_end"])] for w in windows["windows"]]
    flagged = [f for f, w in zip(flagged, windows["windows"], strict=True) if w["cpu_anomaly"]]
    assert flagged == [[s, s + WINDOW_S] for s in hot_windows(served.now)]
    assert cpu["bands"] == flagged
    assert (await plotted(page, "memory"))["bands"] == []
    # Shaded on the canvas: low in the plot, where no line passes, the band's pink
    # inside the first flagged window and white in the window before it.
    inside, before = await page.evaluate(
        """([start, end]) => {
            const u = window.hoststream.charts.cpu;
            const y = Math.round(u.bbox.top + u.bbox.height - 3);
            const x = (t) => Math.round(u.valToPos(t, "x", true));
            const at = (t) => Array.from(u.ctx.getImageData(x(t), y, 1, 1).data);
            return [at((start + end) / 2), at(start - 150)];
        }""",
        flagged[0],
    )
    assert inside[0] > inside[1] + 15, inside
    assert inside[0] > inside[2] + 15, inside
    assert max(before[:3]) - min(before[:3]) < 10, before

    # New samples are drawn by the next refresh, without a reload.
    await page.evaluate("() => { window.notReloaded = true; }")
    rng = random.Random(21)
    fresh = [datetime.now(UTC) + timedelta(seconds=s) for s in (0, 1)]
    await produce(served.settings, [sample(HOT, t, rng, 42.5) for t in fresh])

    async def drawn_fresh() -> bool:
        points = line_points(await plotted(page, "cpu"), "CPU %")
        return all(any(abs(x - t.timestamp()) < 1e-3 for x, _ in points) for t in fresh)

    await eventually(drawn_fresh, timeout_s=20, what="the new samples to be drawn")
    assert await page.evaluate("() => window.notReloaded === true")
    assert "updated" in await page.locator("#status").inner_text()
    pipeline = await page.locator("#pipeline tbody tr").evaluate_all(
        "rows => Object.fromEntries(rows.map(r => [r.dataset.figure, r.cells[1].textContent]))"
    )
    assert pipeline["consumer lag"].endswith("records"), pipeline
    assert pipeline["rejected"].startswith("0 "), pipeline
    assert pipeline["alert events"].isdigit(), pipeline
    assert "alerts to Slack" not in pipeline, pipeline  # no webhook set

    screenshot = tmp_path / "dashboard.png"
    await page.screenshot(path=screenshot, full_page=True)
    print(f"dashboard screenshot: {screenshot}")
    assert not watched.console_errors, watched.console_errors
    assert not watched.page_errors, watched.page_errors


async def test_without_the_token_the_page_asks_for_it_and_says_when_it_is_wrong(
    served: Served, watched: Watched
):
    page = watched.page
    await page.goto(f"{served.url}/")
    form = page.locator("#token-form")
    await form.wait_for(state="visible")
    assert "needs its token" in await form.inner_text()
    assert not watched.console_errors, watched.console_errors
    assert not [url for url in watched.requests if "/api/" in url or "/metrics" in url]

    await page.fill("#token-input", "not-the-token")
    await page.click("#token-form button")
    await page.wait_for_function("() => document.querySelector('#token-form.refused')")
    assert "The token was refused" in await form.inner_text()
    assert await form.is_visible()
    # The browser's own line about the 401; the page logs nothing.
    assert not watched.own_errors(), watched.console_errors

    await page.fill("#token-input", TOKEN)
    await page.click("#token-form button")
    await page.wait_for_function("() => document.querySelectorAll('#hosts tbody tr').length > 0")
    assert await form.is_hidden()
    # A host nobody knows: said in its place, and the page is not stale for it.
    await page.evaluate("() => { location.hash = 'host=no-such-host'; }")
    title = page.locator("#host-title")
    await page.wait_for_function(
        "() => document.getElementById('host-title').textContent.includes('no such host')"
    )
    assert await title.inner_text() == "no-such-host: no such host"
    assert (await page.locator("#status").inner_text()).startswith("updated")
    assert not watched.page_errors, watched.page_errors


async def test_a_worker_that_stops_answering_makes_the_page_stale_then_fresh(
    served: Served, watched: Watched
):
    page = watched.page
    await page.goto(f"{served.url}/#host={HOT}&token={FRAGMENT_TOKEN}")
    await page.wait_for_function("() => window.hoststream.state.samples.length > 0")
    # Stopped, not gone: connections are accepted and never answered.
    served.worker.send_signal(signal.SIGSTOP)
    try:
        await page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('stale since')",
            timeout=20_000,
        )
        status = await page.locator("#status").inner_text()
        assert "did not answer" in status, status
        # Still showing what it had: the hosts and the charts.
        assert await page.locator("#hosts tbody tr").count() == len(HOSTS)
        assert await page.locator("#chart-cpu canvas").count() == 1
    finally:
        served.worker.send_signal(signal.SIGCONT)
    await page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('updated')",
        timeout=30_000,
    )
    assert not watched.own_errors(), watched.console_errors
    assert not watched.page_errors, watched.page_errors


async def raw_get(url: str, path: str, token: str | None = None) -> tuple[int, str, Any]:
    """GET ``path`` exactly as written (no normalising of dots or escapes)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(URL(url + path, encoded=True), headers=headers) as response,
    ):
        return response.status, await response.text(errors="replace"), response.headers


async def test_the_page_and_its_files_are_open_and_nothing_else_is(served: Served):
    status, text, headers = await raw_get(served.url, "/")
    assert status == 200
    assert "<title>hoststream</title>" in text
    assert 'data-token-required="true"' in text
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for path in ("/static/dashboard.js", "/static/dashboard.css", "/static/vendor/uplot/LICENSE"):
        assert (await raw_get(served.url, path))[0] == 200, path
    for path in (
        "/static/../api/hosts",
        "/static/%2e%2e/api/hosts",
        "/static/..%2Fapi%2Fhosts",
        "/static/./../metrics",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/api/hosts",
        "/metrics",
    ):
        status, text, _ = await raw_get(served.url, path)
        assert status in (401, 403, 404), (path, status, text[:200])
        assert "host_id" not in text, path
        assert "root:" not in text, path
    # A static folder is not listed, and a missing file is missing.
    assert (await raw_get(served.url, "/static/"))[0] in (403, 404)
    assert (await raw_get(served.url, "/static/nothing.js"))[0] == 404


async def test_the_samples_lookup_gives_silvers_rows_newest_cut_first(served: Served):
    url = f"{served.url}/api/hosts"
    dsn = served.settings.postgres_dsn.get_secret_value()
    columns = ", ".join(f'"{c}"' for c in SAMPLE_FIGURES)
    status, answer = await ask(f"{url}/{HOT}/samples")
    assert status == 200, answer
    assert isinstance(answer, dict)
    database = await asyncpg.connect(dsn)
    try:
        rows = await database.fetch(
            f"SELECT sample_time, {columns} FROM silver.silver_performance "
            "WHERE host_id = $1 AND sample_time BETWEEN $2 AND $3 ORDER BY sample_time",
            HOT,
            datetime.fromisoformat(answer["from"]),
            datetime.fromisoformat(answer["to"]),
        )
        assert epoch(answer["to"]) - epoch(answer["from"]) == 3600, "the last hour by default"
        assert answer["truncated"] is False
        assert answer["samples"] == [
            {**dict(r), "sample_time": iso(r["sample_time"])} for r in rows
        ]

        # from and to are both included.
        first, last = answer["samples"][3]["sample_time"], answer["samples"][9]["sample_time"]
        status, part = await ask(f"{url}/{HOT}/samples", **{"from": first, "to": last})
        assert status == 200, part
        assert isinstance(part, dict)
        assert part["samples"] == answer["samples"][3:10]

        # A host with more samples than a lookup answers: the newest, and it says so.
        newest = datetime.now(UTC)
        await database.execute(
            "INSERT INTO silver.silver_performance "
            "SELECT (jsonb_populate_record(s, jsonb_build_object('event_id', 'flood-' || g, "
            "'host_id', 'flood', 'sample_time', $1::timestamptz - g * interval '100 ms'))).* "
            "FROM silver.silver_performance s, generate_series(0, $2 + 4) g "
            "WHERE s.event_id = (SELECT min(event_id) FROM silver.silver_performance)",
            newest,
            MAX_SAMPLES,
        )
    finally:
        await database.close()
    started = time.monotonic()
    status, flood = await ask(f"{url}/flood/samples", **{"to": iso(newest)})
    print(f"a lookup of {MAX_SAMPLES:,} samples took {time.monotonic() - started:.2f} s")
    assert status == 200
    assert isinstance(flood, dict)
    assert flood["truncated"] is True
    assert len(flood["samples"]) == MAX_SAMPLES
    assert flood["samples"][-1]["sample_time"] == iso(newest)
    times = [s["sample_time"] for s in flood["samples"]]
    assert times == sorted(times, key=epoch), "oldest first"

    now = datetime.now(UTC)
    for params, message in [
        ({"from": iso(now), "to": iso(now - timedelta(minutes=1))}, "is after to"),
        ({"from": "an hour ago"}, "is not an ISO 8601 timestamp"),
        ({"to": "2026-11-29T10:00:00"}, "has no time zone"),
        ({"from": iso(now - timedelta(days=30))}, "more than the"),
    ]:
        status, refused = await ask(f"{url}/{HOT}/samples", **params)
        assert status == 400, (params, refused)
        assert isinstance(refused, dict)
        assert message in refused["error"], refused
    for host in ("no-such-host", "%00", "x" * 300, "%ED%A0%80"):
        status, refused = await ask(f"{url}/{host}/samples")
        assert status == 404, (host, refused)
    assert (await ask(f"{url}/{HOT}/samples", token=None))[0] == 401


async def test_run_prints_the_dashboard_which_shows_this_host_within_a_minute(
    pipeline_settings: AllSettings, processes: Processes, watched: Watched
):
    # Without a token, as `make run` starts it (the fragment with one: the first test).
    settings = pipeline_settings
    # A duration as a safety net: Ctrl-C (SIGINT) is how it is stopped below.
    arguments = ["run", "--interval", "1", "--duration", "90"]
    run = processes.start(settings_env(settings), *arguments, name="run")
    try:

        async def printed_url() -> str | None:
            assert run.poll() is None, processes.log("run")
            found = re.search(r"^  dashboard (\S+)$", processes.log("run"), re.MULTILINE)
            return found and found[1]

        url = await eventually(printed_url, timeout_s=30, what="run to print the dashboard")
        assert url == f"{base_url(settings)}/"
        started = time.monotonic()

        async def answering() -> bool:
            try:
                return (await ask(f"{base_url(settings)}/health", None))[0] == 200
            except aiohttp.ClientError:
                return False

        # The worker starts listening a few seconds after run printed where it will.
        await eventually(answering, what="the worker's web server")
        page = watched.page
        await page.goto(url)
        await page.locator(f'#hosts tbody tr[data-host="{settings.host_id}"]').wait_for(
            timeout=60_000
        )
        await page.wait_for_function(
            "() => window.hoststream.state.samples.length > 0", timeout=60_000
        )
        shown_s = time.monotonic() - started
        print(f"this host on the dashboard {shown_s:.1f} s after run printed its address")
        assert shown_s < 60
        assert not watched.console_errors, watched.console_errors
        assert not watched.page_errors, watched.page_errors
    finally:
        # Ctrl-C stops the runner's worker and collector too; SIGTERM would leave them.
        run.send_signal(signal.SIGINT)

        async def stopped() -> bool:
            return run.poll() is not None

        await eventually(stopped, timeout_s=40, what="run to stop its worker and collector")
