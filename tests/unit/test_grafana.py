"""Grafana's provisioning (docker/grafana/): every file parses, has what Grafana requires,
names only what is provisioned, and is what docker/grafana/build.py writes; and
:func:`grafana_sql`, which expands a query's macros as Grafana's PostgreSQL data source
does, so tests/integration/test_grafana.py can run every query against PostgreSQL.

Grafana itself cannot run here (no package, no image): the files are checked instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "docker" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
COMPOSE = REPO / "docker" / "compose.grafana.yaml"
EXPRESSIONS = "__expr__"
"""The uid of Grafana's server-side expressions (threshold, reduce, math)."""

_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_MACRO = re.compile(r"\$__(\w+)\(([^)]*)\)")
"""A macro call as Grafana's SQL data sources find it: arguments up to the first ')'."""


def interval_text(seconds: float) -> str:
    """``$__interval`` as Grafana writes it (gtime.FormatInterval): the largest whole unit."""
    for unit in ("y", "d", "h", "m", "s", "ms"):
        if seconds >= _UNITS_S[unit]:
            return f"{int(seconds // _UNITS_S[unit])}{unit}"
    return "1ms"


def interval_seconds(text: str) -> float:
    """An interval argument (``5m``, ``'30s'``) in seconds; ValueError for anything else."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip().strip("'\""))
    if match is None:
        raise ValueError(f"not an interval: {text!r}")
    return int(match[1]) * _UNITS_S[match[2]]


def rfc3339(moment: datetime) -> str:
    """A time as Go's RFC3339Nano writes it in UTC: no trailing zeros in the fraction."""
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def grafana_sql(
    sql: str, start: datetime, end: datetime, interval_s: float, variables: dict[str, str]
) -> str:
    """``sql`` as Grafana's PostgreSQL data source sends it for the range ``start``-``end``.

    First the dashboard's variables (``$name``, ``${name}``, ``[[name]]``): a
    single-valued one goes in as it is with its quotes doubled, so queries quote it
    themselves. Then ``$__interval`` and ``$__interval_ms``, then the macros. An unknown
    variable or macro raises ValueError, as Grafana fails the query.
    """

    def variable(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name not in variables:
            raise ValueError(f"unknown variable {match[0]}")
        return variables[name].replace("'", "''")

    sql = re.sub(r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$(?!__)(\w+)", variable, sql)
    sql = sql.replace("$__interval_ms", str(int(interval_s * 1000)))
    sql = sql.replace("$__interval", interval_text(interval_s))

    def macro(match: re.Match[str]) -> str:
        name = match[1]
        args = [a.strip() for a in match[2].split(",")] if match[2].strip() else []
        low, high = f"'{rfc3339(start)}'", f"'{rfc3339(end)}'"
        if name in ("time", "timeEpoch", "timeFilter", "timeGroup", "timeGroupAlias") and not args:
            raise ValueError(f"{match[0]}: missing time column argument")
        if name == "time":
            return f'{args[0]} AS "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "timeFilter":
            return f"{args[0]} BETWEEN {low} AND {high}"
        if name == "timeFrom":
            return low
        if name == "timeTo":
            return high
        if name in ("timeGroup", "timeGroupAlias"):
            if len(args) < 2:
                raise ValueError(f"{match[0]}: needs a time column and an interval")
            size = f"{interval_seconds(args[1]):g}"
            group = f"floor(extract(epoch from {args[0]})/{size})*{size}"
            return group + (' AS "time"' if name == "timeGroupAlias" else "")
        if name == "unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        raise ValueError(f"unknown macro {match[0]}")

    sql = _MACRO.sub(macro, sql)
    if "$" in sql:
        raise ValueError(f"left unexpanded: {sql[sql.index('$') :][:40]!r}")
    return sql


# What the provisioning holds.


@dataclass(frozen=True)
class Query:
    """One SQL query of the provisioning, and where it stands."""

    where: str
    sql: str
    format: str


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def provisioning(kind: str) -> dict[Path, Any]:
    """The files Grafana reads from provisioning/<kind>/, parsed."""
    return {p: load_yaml(p) for p in sorted((PROVISIONING / kind).glob("*.yaml"))}


def dashboards() -> dict[Path, Any]:
    return {p: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def alert_rules() -> Iterator[dict[str, Any]]:
    for document in provisioning("alerting").values():
        for group in document.get("groups", []):
            yield from group["rules"]


def queries() -> list[Query]:
    """Every SQL query Grafana would run: panels, template variables, alert rules."""
    found = []
    for path, dashboard in dashboards().items():
        for variable in dashboard["templating"]["list"]:
            found.append(
                Query(f"{path.name} variable {variable['name']}", variable["query"], "table")
            )
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                where = f"{path.name} panel {panel['title']!r} {target['refId']}"
                found.append(Query(where, target["rawSql"], target["format"]))
    for rule in alert_rules():
        for data in rule["data"]:
            if data["datasourceUid"] != EXPRESSIONS:
                model = data["model"]
                found.append(
                    Query(f"rule {rule['uid']} {data['refId']}", model["rawSql"], model["format"])
                )
    return found


def datasource_uids() -> set[str]:
    return {d["uid"] for doc in provisioning("datasources").values() for d in doc["datasources"]}


def compose_mounts() -> dict[str, str]:
    """docker/compose.grafana.yaml's volumes: repository path -> path in the container."""
    service = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[str((COMPOSE.parent / source).resolve().relative_to(REPO))] = target
    return mounts


# The files.


def test_every_provisioning_file_parses_with_api_version_1() -> None:
    files = [*PROVISIONING.rglob("*.yaml")]
    assert {p.parent.name for p in files} == {"datasources", "dashboards", "alerting"}
    for path in files:
        assert load_yaml(path)["apiVersion"] == 1, path
    assert dashboards(), "no dashboard JSON"


def test_the_committed_files_are_what_the_generator_writes() -> None:
    checked = subprocess.run(
        [sys.executable, str(GRAFANA / "build.py"), "--check"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_data_source_is_hoststreams_postgresql_from_the_environment() -> None:
    (document,) = provisioning("datasources").values()
    (source,) = document["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["uid"] == "hoststream-pg"
    assert source["url"] == "$GRAFANA_HOSTSTREAM_PG_HOST"
    assert source["jsonData"]["database"] == "$GRAFANA_HOSTSTREAM_PG_DATABASE"


def test_every_variable_the_provisioning_expands_is_set_by_the_compose_file() -> None:
    environment = load_yaml(COMPOSE)["services"]["grafana"]["environment"]
    # Alert rules' queries and annotations are left as they are (Grafana 9.1 on).
    expanded = {
        name
        for path in PROVISIONING.rglob("*.yaml")
        if path.name != "rules.yaml"
        for token in yaml.scan(path.read_text())
        if isinstance(token, yaml.ScalarToken)
        for name in re.findall(r"\$\{?(\w+)", token.value)
    }
    assert expanded == {
        "GRAFANA_HOSTSTREAM_PG_HOST",
        "GRAFANA_HOSTSTREAM_PG_USER",
        "GRAFANA_HOSTSTREAM_PG_PASSWORD",
        "GRAFANA_HOSTSTREAM_PG_DATABASE",
        "GRAFANA_HOSTSTREAM_PG_SSLMODE",
        "GRAFANA_HOSTSTREAM_SLACK_WEBHOOK_URL",
    }
    assert expanded <= set(environment)


def test_the_dashboards_provider_reads_where_the_dashboards_are_mounted() -> None:
    (document,) = provisioning("dashboards").values()
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    mounts = compose_mounts()
    assert mounts["docker/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["docker/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboards_have_unique_uids_and_panels_name_only_the_provisioned_data_source() -> None:
    uids = datasource_uids()
    found = dashboards().values()
    assert len({d["uid"] for d in found}) == len(found)
    for dashboard in found:
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids), dashboard["uid"]
        titles = Counter(p["title"] for p in panels(dashboard))
        assert max(titles.values()) == 1, titles.most_common(1)
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] in uids
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, panel["title"]
            targets = panel["targets"]
            assert targets, panel["title"]
            assert len({t["refId"] for t in targets}) == len(targets)
            assert all(t["datasource"]["uid"] in uids and t["rawQuery"] for t in targets)


def test_the_host_dashboard_has_the_panels_of_the_most_used_host_dashboards() -> None:
    titles = {p["title"] for d in dashboards().values() for p in panels(d)}
    expected = {
        "CPU busy",
        "Sys load (5m avg)",
        "RAM used",
        "Swap used",
        "Root FS used",
        "Uptime",
        "Network traffic",
        "Disk I/O",
        "Anomalies (all hosts, newest first)",
        "Ingest latency (sample time to silver row)",
        "Rejections by reason",
        "Gold windows, final and open",
    }
    assert expected <= titles


def test_percent_panels_show_the_warning_and_golds_critical_thresholds() -> None:
    gauges = [p for d in dashboards().values() for p in panels(d) if p["type"] == "gauge"]
    assert len(gauges) >= 5
    for gauge in gauges:
        steps = gauge["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps] == [None, 80, 90], gauge["title"]


def test_alert_rules_name_provisioned_data_sources_and_a_condition_they_compute() -> None:
    uids = datasource_uids()
    rules = list(alert_rules())
    assert {r["labels"]["severity"] for r in rules} == {"warning", "critical"}
    assert len({r["uid"] for r in rules}) == len(rules)
    for rule in rules:
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs, rule["uid"]
        assert all(d["datasourceUid"] in uids | {EXPRESSIONS} for d in rule["data"])
        # Grafana expands environment variables in every field of a rule but its queries
        # and annotations: a $ elsewhere would vanish.
        interpolated = [rule["uid"], rule["title"], *rule["labels"].values()]
        assert not any("$" in text for text in interpolated), rule["uid"]


def test_every_contact_point_a_policy_names_is_provisioned() -> None:
    documents = provisioning("alerting").values()
    points = {c["name"] for d in documents for c in d.get("contactPoints", [])}
    receivers = [c for d in documents for c in d.get("contactPoints", []) for c in c["receivers"]]
    assert {r["type"] for r in receivers} == {"slack"}
    assert all(r["settings"]["url"] == "$GRAFANA_HOSTSTREAM_SLACK_WEBHOOK_URL" for r in receivers)

    def named(policy: dict[str, Any]) -> Iterator[str]:
        yield policy["receiver"]
        for route in policy.get("routes", []):
            yield from named(route)

    policies = [p for d in documents for p in d.get("policies", [])]
    assert policies
    assert {name for p in policies for name in named(p)} <= points
    routes = [r for p in policies for r in p["routes"]]
    rules = list(alert_rules())
    # Every rule is routed by its labels to a policy grouped by host.
    for rule in rules:
        matching = [
            r
            for r in routes
            if all(rule["labels"].get(k) == v for k, op, v in r["object_matchers"] if op == "=")
        ]
        assert matching, rule["uid"]
        assert "host_id" in matching[0]["group_by"], rule["uid"]


def test_every_query_expands_to_sql_without_grafana_syntax() -> None:
    found = queries()
    assert Counter(q.format for q in found)["time_series"] >= 10
    end = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    for query in found:
        # Raises for what it cannot expand.
        expanded = grafana_sql(query.sql, end - timedelta(hours=1), end, 10, {"host": "h"})
        assert "[[" not in expanded, query.where


# grafana_sql


START = datetime(2026, 11, 30, 0, 0, 0, 250000, tzinfo=UTC)
END = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


def expand(sql: str, interval_s: float = 30, **variables: str) -> str:
    return grafana_sql(sql, START, END, interval_s, variables)


def test_time_filter_becomes_between_the_ranges_rfc3339_times() -> None:
    assert (
        expand("WHERE $__timeFilter(s.sample_time)")
        == "WHERE s.sample_time BETWEEN '2026-11-30T00:00:00.25Z' AND '2026-11-30T01:00:00Z'"
    )
    assert expand("$__timeFrom() $__timeTo()") == (
        "'2026-11-30T00:00:00.25Z' '2026-11-30T01:00:00Z'"
    )


def test_time_group_alias_buckets_epoch_seconds_by_the_interval() -> None:
    assert (
        expand("SELECT $__timeGroupAlias(sample_time, $__interval)", interval_s=120)
        == 'SELECT floor(extract(epoch from sample_time)/120)*120 AS "time"'
    )
    assert expand("$__timeGroup(t, '5m')") == "floor(extract(epoch from t)/300)*300"
    assert (
        expand("$__timeGroupAlias(t, 1h, 0)") == 'floor(extract(epoch from t)/3600)*3600 AS "time"'
    )


def test_interval_is_written_in_its_largest_whole_unit() -> None:
    assert [interval_text(s) for s in (0.2, 1, 59, 60, 90, 7200, 86400 * 3)] == [
        "200ms",
        "1s",
        "59s",
        "1m",
        "1m",
        "2h",
        "3d",
    ]
    assert expand("$__interval_ms $__interval", interval_s=20) == "20000 20s"


def test_a_host_variable_goes_in_with_its_quotes_doubled_in_every_syntax() -> None:
    sql = "host_id = '$host' OR host_id = '${host}' OR host_id = '[[host]]'"
    assert expand(sql, host="o'brien") == (
        "host_id = 'o''brien' OR host_id = 'o''brien' OR host_id = 'o''brien'"
    )


def test_unknown_macros_variables_and_missing_arguments_fail_as_grafana_fails() -> None:
    with pytest.raises(ValueError, match="unknown macro"):
        expand("$__timeFilterish(t)")
    with pytest.raises(ValueError, match="unknown variable"):
        expand("host_id = '$server'")
    with pytest.raises(ValueError, match="missing time column"):
        expand("$__timeFilter()")
    with pytest.raises(ValueError, match="not an interval"):
        expand("$__timeGroup(t, often)")
