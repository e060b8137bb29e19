"""``hoststream status``: a running deployment on one screen, from a worker's pages.

It reads ``/ready`` (this worker, its partitions, the group's workers), ``/stats/``
(the last rejection, an outage waited out) and ``/metrics`` twice, a second apart,
for rates, with the standard library's HTTP client and prometheus-client's parser.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from prometheus_client.parser import text_string_to_metric_families

RATE_WINDOW_S = 1.0
TIMEOUT_S = 5.0


class Unanswered(RuntimeError):
    """No worker answered at the URL, or it refused the token; one line."""


@dataclass(frozen=True)
class Snapshot:
    """What the worker's pages said at one moment."""

    ready: dict[str, object]
    stats: dict[str, object]
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    """(sample name, sorted labels) -> value."""
    at: float


def fetch(url: str, token: str, path: str) -> tuple[int, bytes]:
    """GET ``url + path`` with the bearer token; (status, body). Raises :class:`Unanswered`."""
    request = urllib.request.Request(url.rstrip("/") + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise Unanswered(
                f"the worker at {url} refused the token: set HOSTSTREAM_WEB_TOKEN to its token"
            ) from None
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unanswered(f"no hoststream worker answers at {url} ({reason})") from None


def snapshot(url: str, token: str) -> Snapshot:
    """Read ``/ready``, ``/stats/`` and ``/metrics`` once."""

    def json_of(path: str) -> dict[str, object]:
        _, body = fetch(url, token, path)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Unanswered(
                f"{url}{path} did not answer JSON: is it a hoststream worker?"
            ) from None
        return parsed if isinstance(parsed, dict) else {}

    ready, stats = json_of("/ready"), json_of("/stats/")
    status, body = fetch(url, token, "/metrics")
    if status != 200:
        raise Unanswered(f"{url}/metrics answered {status}")
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    return Snapshot(ready, stats, metrics, time.monotonic())


def summary(before: Snapshot, after: Snapshot, url: str) -> list[str]:
    """The screen: one line per subject."""
    ready = after.ready
    state = "ready" if ready.get("ready") else f"NOT READY: {ready.get('why')}"
    here = _partitions(ready.get("partitions"))
    lines = [f"worker   {ready.get('worker', url)}: {state}; partitions {here}"]
    workers = ready.get("workers")
    workers = workers if isinstance(workers, dict) else {}
    shown = ", ".join(f"{w} {_partitions(p)}" for w, p in workers.items()) or "none known yet"
    lines.append(f"workers  {len(workers)}: {shown}")
    lags = {
        dict(labels)["partition"]: value
        for (name, labels), value in after.metrics.items()
        if name == "hoststream_consumer_lag_records"
    }
    lag_text = ", ".join(f"p{p} {v:,.0f}" for p, v in sorted(lags.items(), key=_numeric))
    lines.append(f"lag      {sum(lags.values()):,.0f} records ({lag_text or 'none measured yet'})")
    seconds = after.at - before.at

    def rate(name: str, **labels: str) -> str:
        key = (name, tuple(sorted(labels.items())))
        total = after.metrics.get(key, 0.0)
        per_s = (total - before.metrics.get(key, 0.0)) / seconds if seconds > 0 else 0.0
        return f"{total:,.0f} ({per_s:,.0f}/s)"

    lines.append(
        f"records  in {rate('hoststream_records_in_total', agent='aggregate_windows')}, "
        f"bronze {rate('hoststream_records_out_total', agent='store_raw_records')}, "
        f"silver {rate('hoststream_records_out_total', agent='validate_samples')}, "
        f"gold rows {rate('hoststream_records_out_total', agent='aggregate_windows')}"
    )
    rejected = {
        dict(labels)["reason_class"]: value
        for (name, labels), value in after.metrics.items()
        if name == "hoststream_records_rejected_total" and value
    }
    by_class = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(rejected.items()))
    lines.append(
        f"refused  {sum(rejected.values()):,.0f} rejected{f' ({by_class})' if by_class else ''}, "
        f"{after.metrics.get(('hoststream_duplicates_total', ()), 0):,.0f} duplicates, "
        f"{after.metrics.get(('hoststream_late_samples_total', ()), 0):,.0f} late samples"
    )
    since = after.metrics.get(("hoststream_seconds_since_last_commit", ()))
    lines.append(
        "commit   "
        + (f"last {since:.1f} s ago" if since is not None else "none since the worker started")
    )
    if ("hoststream_lake_objects_total", ()) in after.metrics:
        lines.append(
            f"lake     {rate('hoststream_records_out_total', agent='archive_raw_records')} "
            f"records in {after.metrics[('hoststream_lake_objects_total', ())]:,.0f} objects"
        )
    waiting = after.stats.get("waiting_for")
    if isinstance(waiting, dict):
        waiting = f"{waiting.get('service')} ({waiting.get('error')}, {waiting.get('waited_s')} s)"
    last = after.stats.get("last_rejection") or "none"
    lines.append(f"errors   waiting for {waiting or 'nothing'}; last rejection: {last}")
    return lines


def _partitions(partitions: object) -> str:
    return (
        "[" + ", ".join(str(p) for p in partitions) + "]" if isinstance(partitions, list) else "?"
    )


def _numeric(item: tuple[str, float]) -> int:
    return int(item[0]) if item[0].isdigit() else -1


def show_status(url: str, token: str, echo: Callable[[str], None]) -> None:
    """Print the summary of the worker at ``url``; raises :class:`Unanswered`."""
    before = snapshot(url, token)
    time.sleep(RATE_WINDOW_S)
    after = snapshot(url, token)
    for line in summary(before, after, url):
        echo(line)
