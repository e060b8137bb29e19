"""The dashboard's rules: which paths are open without the token, the address `run`
prints, and a page that needs nothing from outside the worker."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from app.runner import dashboard_url
from config import AllSettings
from schemas.api import SAMPLES_SPAN_S, time_range
from web.dashboard import STATIC_DIR, TOKEN_MARK, dashboard_page
from web.middleware import is_open

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("path", "open_"),
    [
        ("/", True),
        ("/static/dashboard.js", True),
        ("/static/vendor/uplot/uPlot.iife.min.js", True),
        ("/health", True),
        ("/api/ingest", True),
        ("/static/../api/hosts", False),
        ("/static/./../metrics", False),
        ("/static/vendor/../../api/hosts", False),
        ("/static/..", False),
        ("/static", False),
        ("/staticx/a.js", False),
        ("//", False),
        ("/index.html", False),
        ("/metrics", False),
        ("/api/hosts", False),
        ("/stats/", False),
        ("/health/../api/hosts", False),
    ],
)
def test_only_the_page_its_files_and_the_probes_are_open(path: str, open_: bool):
    assert is_open(path) is open_


def test_run_prints_the_dashboard_with_the_token_escaped_in_the_fragment():
    settings = AllSettings(web_host="127.0.0.1", web_port=6066)
    assert dashboard_url(settings) == "http://127.0.0.1:6066/"
    with_token = settings.model_copy(update={"web_token": SecretStr("a b/c+d#e")})
    assert dashboard_url(with_token) == "http://127.0.0.1:6066/#token=a%20b%2Fc%2Bd%23e"


def test_the_page_says_whether_a_token_is_needed():
    assert 'data-token-required="true"' in dashboard_page(token_required=True)
    assert 'data-token-required="false"' in dashboard_page(token_required=False)
    assert TOKEN_MARK not in dashboard_page(token_required=True)


def test_the_page_loads_only_files_the_worker_serves():
    page = dashboard_page(token_required=False)
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links, page
    for link in links:
        if link.startswith("data:"):
            continue
        assert link.startswith("/static/"), f"{link}: no CDN, nothing from elsewhere"
        assert (STATIC_DIR / link.removeprefix("/static/")).is_file(), link


def test_a_samples_lookup_covers_the_last_hour_by_default():
    assert time_range(None, None, T0, 7 * 86_400, SAMPLES_SPAN_S) == (T0 - timedelta(hours=1), T0)
    assert time_range(None, None, T0, 600, SAMPLES_SPAN_S) == (T0 - timedelta(minutes=10), T0)
