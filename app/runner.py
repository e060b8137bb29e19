"""``hoststream run``: a collector and a worker against the local stack, with progress."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg
import typer

from config import AllSettings
from sinks.postgres import is_transient, redacted_dsn

PROGRESS_EVERY_S = 5.0

_PROGRESS_SQL = """
SELECT (SELECT count(*) FROM bronze.bronze_performance) AS bronze,
       (SELECT count(*) FROM gold.perf_5min_summary) AS gold,
       count(*) AS silver,
       count(DISTINCT host_id) AS hosts,
       extract(epoch FROM now() - max(sample_time)) AS newest_age_s
FROM silver.silver_performance
"""


def run_pipeline(settings: AllSettings, duration_s: float | None) -> int:
    """Run until Ctrl-C or ``duration_s``; returns the exit status (non-zero if a part died)."""
    try:
        return asyncio.run(_run(settings, duration_s))
    except KeyboardInterrupt:
        typer.echo("stopped; the stack keeps running (hoststream stack down stops it)")
        return 0


async def _run(settings: AllSettings, duration_s: float | None) -> int:
    log_dir = settings.stack_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    dsn = settings.postgres_dsn.get_secret_value()
    parts = {name: await _spawn(name, log_dir / f"{name}.log") for name in ("worker", "collector")}
    typer.echo(
        f"hoststream is running: {settings.host_id} every {settings.interval_s:g} s -> "
        f"Kafka {settings.kafka_bootstrap} ({settings.topic}) -> worker -> PostgreSQL\n"
        f"  rows   psql {redacted_dsn(dsn)} -c 'SELECT * FROM silver.silver_performance "
        f"ORDER BY sample_time DESC LIMIT 5'\n"
        f"  dashboard {dashboard_url(settings)}\n"
        f"  api    http://{settings.web_host}:{settings.web_port}/api/hosts "
        f"(all routes: /api/openapi.json)\n"
        f"  metrics http://{settings.web_host}:{settings.web_port}/metrics "
        f"(and /stats/; hoststream status sums them up)\n"
        f"  lake   gs://{settings.gcs_bucket}/raw/{settings.topic}/\n"
        f"  bigquery  hoststream warehouse load --hour {_this_hour()} (an hour of the lake, "
        f"into dataset {settings.bigquery_dataset} of the BigQuery emulator)\n"
        f"  logs   {log_dir}/worker.log, {log_dir}/collector.log\n"
        f"  stop   Ctrl-C (the stack keeps running; hoststream stack down stops it)"
    )
    started = time.monotonic()
    try:
        while duration_s is None or time.monotonic() - started < duration_s:
            await asyncio.sleep(PROGRESS_EVERY_S)
            for name, process in parts.items():
                if process.returncode is not None:
                    typer.secho(
                        f"the {name} exited with status {process.returncode}; "
                        f"last lines of {log_dir / name}.log:\n{_tail(log_dir / f'{name}.log')}",
                        err=True,
                        fg=typer.colors.RED,
                    )
                    return 1
            typer.echo(
                f"[+{time.monotonic() - started:4.0f}s] {await _progress(dsn)}"
                f"{await _lake_progress(settings)}"
            )
        return 0
    finally:
        await asyncio.gather(*(_stop(process) for process in parts.values()))


async def _spawn(name: str, log_path: Path) -> asyncio.subprocess.Process:
    command = "worker" if name == "worker" else "collect"
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", command, stdout=log, stderr=log
        )


async def _stop(process: asyncio.subprocess.Process, grace_s: float = 15.0) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=grace_s)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _progress(dsn: str) -> str:
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
        try:
            row = await connection.fetchrow(_PROGRESS_SQL)
        finally:
            await connection.close()
    except asyncpg.UndefinedTableError:
        return "waiting for the worker to create the tables"
    except Exception as exc:
        if not is_transient(exc):
            raise
        return f"PostgreSQL unreachable ({exc or type(exc).__name__})"
    assert row is not None
    newest = (
        f"newest sample {row['newest_age_s']:.1f} s old"
        if row["newest_age_s"] is not None
        else "no sample yet"
    )
    return (
        f"bronze {row['bronze']} rows, silver {row['silver']} rows, "
        f"gold {row['gold']} 5-minute windows, {row['hosts']} host(s), {newest}"
    )


async def _lake_progress(settings: AllSettings) -> str:
    """The lake's part of the progress line, from the worker's ``/stats/``."""
    if not settings.lake_enabled:
        return ""
    url = f"http://{settings.web_host}:{settings.web_port}/stats/"
    token = settings.web_token.get_secret_value()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(url, headers=headers) as response,
        ):
            lake = (await response.json())["lake"]
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        return "; lake: waiting for the worker"
    waiting = lake["gcs_waiting_s"]
    outage = f", GCS unreachable for {waiting:.0f} s" if waiting else ""
    return f"; lake {lake['objects']} objects, {lake['records']} records{outage}"


def dashboard_url(settings: AllSettings) -> str:
    """The worker's dashboard, with the API's token in the fragment when one is set: the
    browser never sends a fragment, and the page keeps the token for the tab only."""
    url = f"http://{settings.web_host}:{settings.web_port}/"
    token = settings.web_token.get_secret_value()
    return f"{url}#token={quote(token, safe='')}" if token else url


def _this_hour() -> str:
    """This hour, as ``--hour`` takes it: what the lake holds of it so far loads now, and
    loading it again later replaces it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H")


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"
