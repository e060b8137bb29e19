"""Writes hoststream's Grafana dashboards and alert rules from plain dicts.

Run ``python docker/grafana/build.py`` after changing this file and commit what it
writes; ``--check`` writes nothing and exits 1 when the committed files differ
(tests/unit/test_grafana.py runs it). Every panel reads the PostgreSQL medallion
through the provisioned data source ``hoststream-pg``: sub-minute panels from
``silver.silver_performance``, window panels from gold, and what only the raw record
holds (load, swap, root filesystem, disk I/O, uptime, CPU modes) from bronze's
payload of the same sample.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "hoststream-pg"}
CONTACT_POINT = "hoststream-slack"
"""Provisioned in provisioning/alerting/slack.yaml."""
WARNING_PERCENT = 80.0
CRITICAL_PERCENT = 90.0
"""Gold's default anomaly thresholds (HOSTSTREAM_ANOMALY_*): the critical rules fire on
gold's flags, so they follow those settings; this number only colours the panels."""
GRID_COLUMNS = 24

Json = dict[str, Any]

HOST = "'$host'"
"""The host variable as a SQL literal: Grafana inserts a single-valued variable as it
is, with quotes doubled, so the query supplies the quotes."""

SAMPLES = f"""silver.silver_performance s
JOIN bronze.bronze_performance b
  ON b.topic = s.source_topic AND b."partition" = s.source_partition
  AND b."offset" = s.source_offset
CROSS JOIN LATERAL (SELECT replace(b.payload, '\\u0000', '\\ufffd')::json AS doc) raw
WHERE s.host_id = {HOST} AND $__timeFilter(s.sample_time)"""
"""The host's samples with their raw record as ``raw.doc``. Silver checked each of these
records, so the payload is JSON. Silver keeps a ``\\u0000`` in strings it does not read
(a tag, a mountpoint), which PostgreSQL cannot turn into text: reading any field of
such a document fails, so it becomes U+FFFD first (where the six characters are not an
escape, they are the tail of an escaped backslash and stay valid JSON). ``json`` rather
than ``jsonb``: jsonb also refuses numbers past numeric's range, which silver lets
through in fields it does not know."""

SILVER = f"silver.silver_performance s WHERE s.host_id = {HOST} AND $__timeFilter(s.sample_time)"
"""The host's samples, for figures silver holds."""
CORES = "nullif(json_array_length(raw.doc -> 'cpu' -> 'per_core_percent'), 0)"
"""Logical cores: the collector reports each one's busy percent."""
LOAD_5M_PERCENT = f"100 * (raw.doc -> 'cpu' -> 'load' ->> 'load_5m')::float8 / {CORES}"
ROOT_DISK = (
    "(SELECT d FROM json_array_elements(raw.doc -> 'disks') d"
    " WHERE d ->> 'mountpoint' = '/' LIMIT 1)"
)
METRICS = {
    "cpu": ("CPU p95", "cpu_p95_percent"),
    "memory": ("Memory maximum", "memory_max_percent"),
    "disk": ("Fullest disk", "disk_max_percent"),
}
"""Gold's flagged metrics: flag column prefix -> (name, the column its threshold applies to)."""


def any_flag(alias: str = "") -> str:
    """True for a gold row with any anomaly flag; ``alias`` qualifies the columns."""
    return "(" + " OR ".join(f"{alias}{metric}_anomaly" for metric in METRICS) + ")"


def number(path: str) -> str:
    """The number at ``path`` (``cpu.load.load_1m``) of the raw record, as float8."""
    *groups, last = path.split(".")
    steps = "".join(f" -> '{g}'" for g in groups)
    return f"(raw.doc{steps} ->> '{last}')::float8"


def series(columns: str, source: str = SAMPLES) -> str:
    """Columns averaged per Grafana interval: a time series of the host."""
    return (
        f"SELECT $__timeGroupAlias(s.sample_time, $__interval),\n  {columns}\n"
        f"FROM {source}\nGROUP BY 1\nORDER BY 1"
    )


def newest(column: str, source: str = SAMPLES) -> str:
    """The host's newest value of ``column`` in the time range."""
    return (
        f'SELECT s.sample_time AS "time", {column}\nFROM {source}\n'
        "ORDER BY s.sample_time DESC\nLIMIT 1"
    )


def windows(table: str, columns: str) -> str:
    """Gold's windows of the host from ``table``, each at its start."""
    return (
        f'SELECT window_start AS "time",\n  {columns}\nFROM gold.{table}\n'
        f"WHERE host_id = {HOST} AND $__timeFilter(window_start)\nORDER BY 1"
    )


def thresholds(warning: float | None, critical: float | None) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    if warning is not None:
        steps.append({"color": "orange", "value": warning})
    if critical is not None:
        steps.append({"color": "red", "value": critical})
    return {"mode": "absolute", "steps": steps}


def panel(
    title: str,
    sql: str,
    kind: str = "timeseries",
    unit: str = "percent",
    width: int = 12,
    height: int = 8,
    limits: tuple[float, float] | None = None,
    description: str = "",
) -> Json:
    """One panel with one raw SQL query. ``limits``: warning and critical values, drawn as
    lines on time series and as colours on stats and gauges; percent panels run 0-100."""
    table = kind == "table"
    defaults: Json = {"unit": unit, "thresholds": thresholds(*(limits or (None, None)))}
    if unit == "percent":
        defaults |= {"min": 0, "max": 100}
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "spanNulls": False,
            "thresholdsStyle": {"mode": "line" if limits else "off"},
        }
    options: Json = {}
    if kind in ("stat", "gauge"):
        options["reduceOptions"] = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if kind == "stat":
        options |= {"colorMode": "value", "graphMode": "none", "textMode": "value"}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorMode": "code",
                "format": "table" if table else "time_series",
                "rawQuery": True,
                "rawSql": sql,
            }
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def dashboard(uid: str, title: str, rows: list[tuple[str, list[Json]]], **extra: Any) -> Json:
    """A dashboard of rows of panels, each row filled left to right, 24 columns wide."""
    laid: list[Json] = []
    y = 0
    for row_title, panels in rows:
        laid.append(
            {
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": GRID_COLUMNS, "h": 1},
                "panels": [],
            }
        )
        y += 1
        x = row_height = 0
        for p in panels:
            width, height = p["gridPos"]["w"], p["gridPos"]["h"]
            if x + width > GRID_COLUMNS:
                x, y, row_height = 0, y + row_height, 0
            laid.append(p | {"gridPos": {"x": x, "y": y, "w": width, "h": height}})
            x += width
            row_height = max(row_height, height)
        y += row_height
    return {
        "uid": uid,
        "title": title,
        "tags": ["hoststream"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": []},
        "panels": [p | {"id": n} for n, p in enumerate(laid, start=1)],
    } | extra


HOST_VARIABLE_SQL = (
    "SELECT host_id AS __value,\n"
    "  CASE WHEN hostname = host_id THEN host_id ELSE hostname || ' (' || host_id || ')' END"
    " AS __text\nFROM silver.hosts\nORDER BY 2"
)

PERCENT = (WARNING_PERCENT, CRITICAL_PERCENT)
WINDOW_TABLES = {"5-minute": "perf_5min_summary", "hourly": "perf_1h_summary"}


def window_panels(name: str, table: str) -> list[Json]:
    return [
        panel(
            f"CPU, {name} windows",
            windows(
                table,
                'cpu_avg_percent AS "avg", cpu_p95_percent AS "p95", cpu_max_percent AS "max"',
            ),
            width=6,
            limits=PERCENT,
            description="Gold flags a window whose p95 is over HOSTSTREAM_ANOMALY_CPU_P95_PERCENT.",
        ),
        panel(
            f"Memory, {name} windows",
            windows(
                table,
                'memory_avg_percent AS "avg", memory_p95_percent AS "p95", '
                'memory_max_percent AS "max"',
            ),
            width=6,
            limits=PERCENT,
        ),
        panel(
            f"Fullest disk, {name} windows",
            windows(table, 'disk_max_percent AS "max"'),
            width=6,
            limits=PERCENT,
        ),
        panel(
            f"Network traffic, {name} windows",
            windows(table, 'net_bytes_recv AS "received", net_bytes_sent AS "sent"'),
            unit="decbytes",
            width=6,
            description="Bytes in each window: sums of the samples' counter deltas.",
        ),
    ]


def now_panel(title: str, sql: str, unit: str = "percent", width: int = 3, **extra: Any) -> Json:
    """A figure of the host's newest sample: a gauge with the thresholds for a percent, a
    stat otherwise."""
    gauge = unit == "percent"
    kind, limits = ("gauge", PERCENT) if gauge else ("stat", None)
    return panel(title, sql, kind, unit=unit, width=width, height=5, limits=limits, **extra)


def hosts_dashboard() -> Json:
    now = [
        now_panel("CPU busy", newest("s.cpu_percent", SILVER)),
        now_panel(
            "Sys load (5m avg)",
            newest(f"{LOAD_5M_PERCENT} AS load_5m_percent"),
            description="The 5-minute load average per logical core, percent.",
        ),
        now_panel("RAM used", newest("s.memory_percent", SILVER)),
        now_panel("Swap used", newest(f"{number('memory.swap.percent')} AS percent")),
        now_panel("Root FS used", newest(f"({ROOT_DISK} ->> 'percent')::float8 AS percent")),
        now_panel("CPU cores", newest(f"{CORES} AS cores"), "short", 2),
        now_panel("Uptime", newest(f"{number('host.uptime_s')} AS uptime_s"), "s"),
        now_panel("RAM total", newest("s.memory_total_bytes", SILVER), "bytes", 2),
        now_panel(
            "Swap total", newest(f"{number('memory.swap.total_bytes')} AS total_bytes"), "bytes", 2
        ),
    ]
    samples = [
        panel(
            "CPU busy, every sample", series('avg(s.cpu_percent) AS "busy"', SILVER), limits=PERCENT
        ),
        panel(
            "CPU modes",
            series(
                f'avg({number("cpu.times.user_percent")}) AS "user",\n'
                f'  avg({number("cpu.times.system_percent")}) AS "system",\n'
                f'  avg({number("cpu.times.iowait_percent")}) AS "iowait",\n'
                f'  avg({number("cpu.times.steal_percent")}) AS "steal"'
            ),
            description="Linux reports iowait and steal; other platforms leave them out.",
        ),
        panel(
            "System load",
            series(
                f'avg({number("cpu.load.load_1m")}) AS "1m",\n'
                f'  avg({number("cpu.load.load_5m")}) AS "5m",\n'
                f'  avg({number("cpu.load.load_15m")}) AS "15m"'
            ),
            unit="short",
        ),
        panel(
            "Memory",
            series(
                'avg(s.memory_used_bytes) AS "used", avg(s.memory_available_bytes) AS "available",'
                '\n  avg(s.memory_total_bytes) AS "total",\n'
                f'  avg({number("memory.swap.used_bytes")}) AS "swap used"'
            ),
            unit="bytes",
        ),
        panel(
            "Network traffic",
            series(
                'avg(s.net_bytes_recv_per_s) AS "received", avg(s.net_bytes_sent_per_s) AS "sent"',
                SILVER,
            ),
            unit="Bps",
        ),
        panel(
            "Disk space used",
            series(
                f"avg(({ROOT_DISK} ->> 'percent')::float8) AS \"root fs\",\n"
                '  avg(s.disk_max_percent) AS "fullest disk"'
            ),
            limits=PERCENT,
        ),
        panel(
            "Disk I/O",
            series(
                "avg((SELECT sum((io ->> 'read_bytes_per_s')::float8)"
                " FROM json_array_elements(raw.doc -> 'disk_io') io)) AS \"read\",\n"
                "  avg((SELECT sum((io ->> 'write_bytes_per_s')::float8)"
                " FROM json_array_elements(raw.doc -> 'disk_io') io)) AS \"written\""
            ),
            unit="Bps",
            description="Summed over the host's block devices.",
        ),
        panel(
            "Swap activity",
            series(
                f'avg({number("memory.swap.swapped_in_bytes_per_s")}) AS "in",\n'
                f'  avg({number("memory.swap.swapped_out_bytes_per_s")}) AS "out"'
            ),
            unit="Bps",
        ),
    ]
    fleet = [
        panel(
            "Hosts",
            "SELECT host_id, hostname, last_sample_time, cpu_percent, memory_percent,"
            " disk_max_percent,\n  (SELECT count(*) FROM gold.perf_5min_summary g"
            f" WHERE g.host_id = h.host_id AND NOT g.is_final AND {any_flag('g.')})"
            " AS open_anomalies\n"
            "FROM silver.hosts h\nORDER BY last_sample_time DESC",
            "table",
            unit="none",
            height=8,
        ),
        panel(
            "Anomalies (all hosts, newest first)",
            " UNION ALL\n".join(
                f'SELECT window_start AS "time", host_id, \'{name}\' AS "window", cpu_p95_percent,'
                " memory_max_percent, disk_max_percent,\n  cpu_anomaly, memory_anomaly,"
                f" disk_anomaly, is_final\nFROM gold.{table}\n"
                f"WHERE {any_flag()} AND $__timeFilter(window_start)"
                for name, table in WINDOW_TABLES.items()
            )
            + "\nORDER BY 1 DESC\nLIMIT 500",
            "table",
            unit="none",
            height=8,
        ),
    ]
    rows = [
        ("Fleet", fleet),
        ("$host now", now),
        ("$host samples (silver, sub-minute)", samples),
    ] + [
        (f"$host {name} windows (gold)", window_panels(name, table))
        for name, table in WINDOW_TABLES.items()
    ]
    return dashboard(
        "hoststream-hosts",
        "hoststream: hosts",
        rows,
        templating={
            "list": [
                {
                    "name": "host",
                    "label": "Host",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": HOST_VARIABLE_SQL,
                    "definition": HOST_VARIABLE_SQL,
                    "refresh": 2,
                    "sort": 0,
                    "multi": False,
                    "includeAll": False,
                }
            ]
        },
    )


def pipeline_dashboard() -> Json:
    per_minute = " UNION ALL\n".join(
        f"SELECT $__timeGroupAlias({column}, 1m), '{layer}' AS metric, count(*) AS value"
        f"\nFROM {table}\nWHERE $__timeFilter({column})\nGROUP BY 1"
        for layer, table, column in (
            ("bronze", "bronze.bronze_performance", "ingested_at"),
            ("silver", "silver.silver_performance", "ingested_at"),
            ("rejected", "silver.rejected", "rejected_at"),
            ("gold 5-minute", "gold.perf_5min_summary", "updated_at"),
            ("gold hourly", "gold.perf_1h_summary", "updated_at"),
        )
    )
    latency = "extract(epoch FROM ingested_at - sample_time)"
    rows = [
        (
            "Flow",
            [
                panel(
                    "Hosts reporting (sample in the last 5 minutes)",
                    "SELECT count(*) FILTER (WHERE last_sample_time > now() - interval '5 minutes')"
                    " AS reporting\nFROM silver.hosts",
                    "stat",
                    unit="short",
                    width=6,
                    height=5,
                ),
                panel(
                    "Newest sample age",
                    "SELECT extract(epoch FROM now() - max(last_sample_time)) AS age_s"
                    "\nFROM silver.hosts",
                    "stat",
                    unit="s",
                    width=6,
                    height=5,
                ),
                panel(
                    "Gold windows, final and open",
                    " UNION ALL\n".join(
                        f"SELECT '{name}' AS \"window\", count(*) FILTER (WHERE is_final) AS final,"
                        " count(*) FILTER (WHERE NOT is_final) AS open\n"
                        f"FROM gold.{table}\nWHERE $__timeFilter(window_start)"
                        for name, table in WINDOW_TABLES.items()
                    ),
                    "table",
                    unit="none",
                    width=12,
                    height=5,
                    description="A window is final once it closed (grace after its end) and "
                    "stopped changing.",
                ),
                panel(
                    "Rows written per minute, by layer",
                    per_minute + "\nORDER BY 1",
                    unit="short",
                    description="Gold counts the windows whose row was last written that minute.",
                ),
                panel(
                    "Ingest latency (sample time to silver row)",
                    f"SELECT $__timeGroupAlias(ingested_at, $__interval),\n"
                    f'  percentile_cont(0.5) WITHIN GROUP (ORDER BY {latency}) AS "p50",\n'
                    f'  percentile_cont(0.95) WITHIN GROUP (ORDER BY {latency}) AS "p95",\n'
                    f'  max({latency}) AS "max"\nFROM silver.silver_performance\n'
                    "WHERE $__timeFilter(ingested_at)\nGROUP BY 1\nORDER BY 1",
                    unit="s",
                    description="Includes the collector's spool: a host back from a Kafka outage "
                    "shows its wait here.",
                ),
            ],
        ),
        (
            "Rejections",
            [
                panel(
                    "Rejections by reason",
                    "SELECT split_part(reason, ':', 1) AS reason,"
                    " count(*) AS records, max(rejected_at) AS last_rejected,\n"
                    "  min(reason) AS example\nFROM silver.rejected\n"
                    "WHERE $__timeFilter(rejected_at)\nGROUP BY 1\nORDER BY records DESC",
                    "table",
                    unit="none",
                    width=24,
                    description="Reasons grouped by their first part (the field, or 'not JSON'); "
                    "every record is in silver.rejected and on machine_metrics.dlq.",
                ),
            ],
        ),
    ]
    return dashboard("hoststream-pipeline", "hoststream: pipeline", rows)


def rule(uid: str, title: str, sql: str, above: float, severity: str, summary: str) -> Json:
    """An alert rule that fires per host whose value in ``sql`` is above ``above``.

    ``sql`` returns a ``host_id`` column (a label of the alert) and one number per host.
    """
    return {
        "uid": uid,
        "title": title,
        "condition": "B",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": 900, "to": 0},
                "datasourceUid": DATASOURCE["uid"],
                "model": {
                    "refId": "A",
                    "datasource": DATASOURCE,
                    "editorMode": "code",
                    "format": "table",
                    "rawQuery": True,
                    "rawSql": sql,
                },
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "B",
                    "datasource": {"type": "__expr__", "uid": "__expr__"},
                    "type": "threshold",
                    "expression": "A",
                    "conditions": [{"evaluator": {"type": "gt", "params": [above]}}],
                },
            },
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "1m",
        "labels": {"source": "hoststream", "severity": severity},
        "annotations": {"summary": summary},
    }


def newest_window(column: str) -> str:
    """Each host's newest 5-minute window of the last 15 minutes: ``column`` per host."""
    return (
        f"SELECT DISTINCT ON (host_id) host_id, {column}\nFROM gold.perf_5min_summary\n"
        "WHERE $__timeFilter(window_start)\nORDER BY host_id, window_start DESC"
    )


def alert_rules() -> Json:
    rules = []
    for metric, (name, column) in METRICS.items():
        rules.append(
            rule(
                f"hoststream-{metric}-warning",
                f"{name} over {WARNING_PERCENT:g} %",
                newest_window(f"{column} AS value"),
                WARNING_PERCENT,
                "warning",
                f"{{{{ $labels.host_id }}}}: {name.lower()} of its newest 5-minute window is "
                f"{{{{ $values.A.Value }}}} %",
            )
        )
        rules.append(
            rule(
                f"hoststream-{metric}-anomaly",
                f"{name} anomaly (gold)",
                newest_window(f"{metric}_anomaly::int AS value"),
                0,
                "critical",
                f"{{{{ $labels.host_id }}}}: gold flagged its newest 5-minute window "
                f"({name.lower()} over HOSTSTREAM_ANOMALY_{column.upper()})",
            )
        )
    rules.append(
        rule(
            "hoststream-host-silent",
            "Host stopped reporting",
            "SELECT host_id, extract(epoch FROM now() - last_sample_time) AS silent_s\n"
            "FROM silver.hosts\nWHERE last_sample_time > now() - interval '1 day'",
            300,
            "warning",
            "{{ $labels.host_id }}: no sample for {{ $values.A.Value }} s",
        )
    )
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "hoststream",
                "folder": "hoststream",
                "interval": "1m",
                "rules": rules,
            }
        ],
    }


class _Dumper(yaml.SafeDumper):
    """YAML as a person writes it: no anchors for repeated values, SQL as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    )


_Dumper.add_representer(str, _text)


def outputs() -> dict[Path, str]:
    """Every generated file and its text."""
    generated = "# Generated by docker/grafana/build.py: edit that, then run it.\n"
    return {
        HERE / "dashboards" / "hosts.json": json.dumps(hosts_dashboard(), indent=2) + "\n",
        HERE / "dashboards" / "pipeline.json": json.dumps(pipeline_dashboard(), indent=2) + "\n",
        HERE / "provisioning" / "alerting" / "rules.yaml": generated
        + yaml.dump(alert_rules(), Dumper=_Dumper, sort_keys=False, width=100),
    }


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    stale = []
    for path, text in outputs().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(HERE.parents[1]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date, run python docker/grafana/build.py: {', '.join(map(str, stale))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
