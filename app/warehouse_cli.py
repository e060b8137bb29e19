"""``hoststream warehouse``: load event hours of the lake into BigQuery, as the hourly DAG
does, with the same functions (warehouse/)."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from config import WarehouseSettings

if TYPE_CHECKING:
    from warehouse.load import HourReport

warehouse_cli = typer.Typer(
    help="Load the lake into BigQuery: the raw table and the hourly aggregate.",
    no_args_is_help=True,
)


@warehouse_cli.command("load")
def load(
    hour: Annotated[str, typer.Option(help="Event hour, UTC, as 2026-11-22T13.")],
    reload_hours: Annotated[
        int | None,
        typer.Option(
            min=1, help="Hours loaded, ending with --hour [HOSTSTREAM_WAREHOUSE_RELOAD_HOURS]."
        ),
    ] = None,
) -> None:
    """Load an event hour and the hours before it (late data), as the hourly DAG's run
    for that hour does: each replaces its rows, so a rerun changes nothing."""
    from warehouse.hours import hours_to_reload, parse_hour

    settings = _settings()
    try:
        hours = hours_to_reload(parse_hour(hour), reload_hours or settings.warehouse_reload_hours)
    except ValueError as exc:
        _fail(str(exc), code=2)
    _load(settings, hours)


@warehouse_cli.command("backfill")
def backfill(
    from_: Annotated[str, typer.Option("--from", help="First event hour, UTC, as 2026-11-22T10.")],
    to: Annotated[str, typer.Option("--to", help="Last event hour, included.")],
) -> None:
    """Load every event hour from --from to --to, oldest first."""
    from warehouse.hours import hour_range, parse_hour

    settings = _settings()
    try:
        hours = hour_range(parse_hour(from_), parse_hour(to))
    except ValueError as exc:
        _fail(str(exc), code=2)
    _load(settings, hours)


def _fail(message: str, code: int = 1) -> NoReturn:
    # Imported here: app.cli imports this module to register the commands.
    from app.cli import fail

    fail(message, code)


def _settings() -> WarehouseSettings:
    from app.cli import settings_or_exit

    try:
        import google.cloud.bigquery  # noqa: F401
    except ImportError:
        _fail(
            "this command needs hoststream's warehouse extra: pip install 'hoststream[warehouse]'"
        )
    return settings_or_exit(WarehouseSettings)


def _load(settings: WarehouseSettings, hours: list[datetime]) -> None:
    from google.api_core.exceptions import GoogleAPIError

    from sinks.gcs import BucketUnusable, GcsBucket, GcsUnreachable
    from warehouse.aggregate import aggregate_hour
    from warehouse.load import GCS_PATIENCE_S, WarehouseError, ensure_tables, load_hour
    from warehouse.target import bigquery_client

    wh = settings.warehouse()
    client = bigquery_client(wh, settings.bigquery_emulator_host or None)
    bucket = GcsBucket(wh.bucket, settings.gcs_emulator_host or None, GCS_PATIENCE_S)
    # One attempt per invocation: running the command again loads again.
    attempt = f"cli_{uuid.uuid4().hex[:12]}"
    typer.echo(
        f"loading {len(hours)} hour(s) of gs://{wh.bucket}/raw/{wh.topic}/ into "
        f"{wh.project}.{wh.dataset}",
        err=True,
    )
    try:
        ensure_tables(client, wh)
        with typer.progressbar(hours, label="hours", file=sys.stderr) as progress:
            for hour in progress:
                report = load_hour(client, bucket, wh, hour, attempt)
                aggregate_hour(client, wh, hour, attempt)
                typer.echo(summary_line(report))
    except (WarehouseError, BucketUnusable, GcsUnreachable) as exc:
        _fail(str(exc))
    except GoogleAPIError as exc:
        _fail(f"BigQuery refused a job: {' '.join(str(exc).split())[:600]}")


def summary_line(report: HourReport) -> str:
    """One hour's line: what was read, kept, left out, and how long it took."""
    from warehouse.hours import hour_label

    clean = report.clean
    line = (
        f"{hour_label(clean.hour)}  {clean.objects:,} objects  {clean.records:,} records  "
        f"{clean.rows:,} rows  {clean.hosts:,} hosts  {clean.rejected_count:,} rejected  "
        f"{clean.duplicates:,} duplicates  {report.seconds:.1f} s"
    )
    reasons = [f"{count:,} x {reason}" for reason, count in list(clean.rejected.items())[:3]]
    return line + "".join(f"\n    rejected: {reason[:200]}" for reason in reasons)
