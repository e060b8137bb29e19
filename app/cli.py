"""The ``hoststream`` command: the local stack, the collector, the worker, and all at once."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from app.alerts_cli import alerts_cli
from app.warehouse_cli import warehouse_cli
from collector.publisher import BrokerUnreachable
from config import (
    ROLES,
    AllSettings,
    CollectorSettings,
    StackSettings,
    UnknownSetting,
    WorkerSettings,
    load,
)
from config.common import CommonSettings

T = TypeVar("T")
S = TypeVar("S", bound=CommonSettings)

cli = typer.Typer(
    help="hoststream: host metrics from every machine into Kafka, PostgreSQL, GCS and BigQuery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_cli = typer.Typer(help="The local stack: Kafka, PostgreSQL, GCS and BigQuery emulators.")
cli.add_typer(stack_cli, name="stack")
cli.add_typer(warehouse_cli, name="warehouse")
cli.add_typer(alerts_cli, name="alerts")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line on stderr and exit: what a user sees instead of a traceback."""
    typer.secho(f"hoststream: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def settings_or_exit(role: type[S], **overrides: Any) -> S:
    """One role's settings, or one line per bad variable and exit status 2."""
    try:
        return load(role, **{k: v for k, v in overrides.items() if v is not None})
    except UnknownSetting as exc:
        fail(f"bad configuration: {exc}", code=2)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"HOSTSTREAM_{field.upper()}" if field else "configuration"
            lines.append(f"{name}: {error['msg']}")
        fail("bad configuration:\n  " + "\n  ".join(lines), code=2)


EXTRAS = {"worker": "faust", "stack": "asyncpg"}
"""Each extra of the package, by a module only it installs."""


def require_extra(extra: str) -> None:
    """Exit with one line naming the extra to install when ``extra`` is not installed:
    a host that only collects has none of them."""
    if importlib.util.find_spec(EXTRAS[extra]) is None:
        fail(f"this command needs hoststream's {extra} extra: pip install 'hoststream[{extra}]'")


def _unreachable() -> tuple[type[Exception], ...]:
    # sinks.postgres and sinks.gcs are imported only by the commands that use them (a
    # collector-only install has neither asyncpg nor gcloud): their errors can only
    # occur once they are.
    postgres, gcs = (sys.modules.get(m) for m in ("sinks.postgres", "sinks.gcs"))
    return (
        BrokerUnreachable,
        *((postgres.DatabaseUnreachable,) if postgres else ()),
        *((gcs.BucketUnusable, gcs.GcsUnreachable) if gcs else ()),
    )


@cli.command()
def collect(
    once: Annotated[bool, typer.Option(help="Take a single sample.")] = False,
    print_: Annotated[
        bool, typer.Option("--print", help="Print samples as JSON instead of sending them.")
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many samples, once Kafka has them all."),
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between samples [HOSTSTREAM_INTERVAL_S].")
    ] = None,
) -> None:
    """Sample this host every interval and publish to Kafka (keyed by host id).

    Samples wait in an on-disk spool until Kafka acknowledges them, so a broker
    outage or a restart of the collector loses none.
    """
    from collector.main import Handover, exec_collector

    settings = settings_or_exit(CollectorSettings, interval_s=interval)
    handover: Handover = {
        "bootstrap_servers": settings.bootstrap_servers,
        "topic": settings.topic,
        "ingest_url": settings.collector_ingest_url
        if settings.collector_transport == "http"
        else "",
        "ingest_token": settings.collector_ingest_token.get_secret_value(),
        "host_id": settings.host_id,
        "interval_s": settings.interval_s,
        "tags": settings.tag_pairs,
        "collector_dir": str(settings.collector_dir),
        "spool_max_bytes": settings.spool_max_bytes,
        "count": 1 if once else count,
        "print_samples": print_,
    }
    # The collector runs for months: it goes on in a process of its own that never
    # loads pydantic or typer (collector/main.py), under this one's pid.
    exec_collector(handover)


@cli.command()
def schema(
    output: Annotated[
        Path | None, typer.Option(help="Write the JSON Schema to this file instead of printing it.")
    ] = None,
) -> None:
    """Print the JSON Schema of the record a collector publishes."""
    from schemas.jsonschema import schema_document

    document = schema_document()
    if output is None:
        typer.echo(document.decode(), nl=False)
    else:
        output.write_bytes(document)


@cli.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Worker log level.")] = "info",
) -> None:
    """Start a Faust worker: the bronze, silver and gold agents and the web server."""
    require_extra("worker")
    from app.worker import run_worker

    settings = settings_or_exit(WorkerSettings)
    try:
        run_worker(settings, loglevel)
    except _unreachable() as exc:
        fail(str(exc))


@cli.command()
def status(
    url: Annotated[
        str | None, typer.Option(help="A worker's web address (default: the local worker's).")
    ] = None,
) -> None:
    """Summarise a running deployment: workers, partitions, lag, rates, last errors."""
    require_extra("worker")  # prometheus-client reads /metrics
    from app.status import Unanswered, show_status

    settings = settings_or_exit(WorkerSettings)
    try:
        show_status(
            url or f"http://{settings.web_host}:{settings.web_port}",
            settings.web_token.get_secret_value(),
            typer.echo,
        )
    except Unanswered as exc:
        fail(str(exc))


@cli.command()
def run(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between samples [HOSTSTREAM_INTERVAL_S].")
    ] = None,
) -> None:
    """Start the local stack, a collector and a worker, and show rows arriving."""
    require_extra("worker")
    from app.runner import run_pipeline

    settings = settings_or_exit(AllSettings, interval_s=interval)
    _stack_or_exit(lambda stack: (stack.install(), stack.up()))
    sys.exit(run_pipeline(settings, duration))


@cli.command()
def replay(
    from_: Annotated[str, typer.Option("--from", help="First event hour, UTC, as 2026-11-22T10.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Last event hour, included (default: --from).")
    ] = None,
    host: Annotated[
        list[str] | None, typer.Option(help="Only this host's records (Kafka key); repeatable.")
    ] = None,
    to_topic: Annotated[
        str | None, typer.Option(help="Topic to produce to (default: HOSTSTREAM_TOPIC).")
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option(help="Report bad objects and leave them out instead of stopping.")
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(help="First delete the hours' silver rows and gold windows (see README)."),
    ] = False,
) -> None:
    """Produce the lake's records of some event hours back to a topic, keyed as they were."""
    require_extra("worker")
    import asyncio

    from app.replay import ReplayStopped, summary
    from app.replay import replay as replay_hours
    from schemas.lake import parse_hour

    settings = settings_or_exit(WorkerSettings)
    try:
        first = parse_hour(from_)
        last = parse_hour(to) if to is not None else first
    except ValueError as exc:
        fail(str(exc), code=2)
    if last < first:
        fail("--to is before --from", code=2)
    try:
        done = asyncio.run(
            replay_hours(
                settings,
                first,
                last,
                hosts=host or (),
                to_topic=to_topic,
                skip_bad=skip_bad,
                rebuild=rebuild,
                echo=lambda line: typer.echo(line, err=True),
            )
        )
    except ReplayStopped as exc:
        fail(str(exc))
    except _unreachable() as exc:
        fail(str(exc))
    typer.echo(summary(done, to_topic or settings.topic, first, last))


@cli.command()
def config(
    markdown: Annotated[bool, typer.Option(help="Print the table of every setting.")] = False,
) -> None:
    """Print each role's settings in force (secrets hidden), or every setting as a
    Markdown table."""
    if markdown:
        typer.echo("| setting | environment variable | default | read by | meaning |")
        typer.echo("|---|---|---|---|---|")
        shown_before: set[str] = set()
        for role in ROLES.values():
            for name, field in role.model_fields.items():
                if name in shown_before:
                    continue
                shown_before.add(name)
                readers = ", ".join(r for r, fields in ROLES.items() if name in fields.model_fields)
                env = f"`HOSTSTREAM_{name.upper()}`"
                typer.echo(
                    f"| {name} | {env} | {_default(name, field.get_default())} | {readers} "
                    f"| {field.description or ''} |"
                )
        return
    for number, (name, role) in enumerate(ROLES.items()):
        typer.echo(f"{chr(10) if number else ''}# {name}")
        for setting, value in settings_or_exit(role).model_dump().items():
            typer.echo(f"HOSTSTREAM_{setting.upper()}={value}")


def _default(name: str, value: Any) -> str:
    """A setting's default as the table shows it."""
    if name == "host_id":
        value = ""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = str(value).lower()
    return f"`{value}`" if value not in ("", None) else _UNSET_DEFAULTS.get(name, "(none)")


_UNSET_DEFAULTS = {
    "kafka_bootstrap": "(local stack)",
    "postgres_dsn": "(local stack)",
    "gcs_emulator_host": "(local stack)",
    "bigquery_emulator_host": "(local stack)",
    "host_id": "(machine id)",
}


def _stack_or_exit(action: Callable[[Any], T]) -> T:
    require_extra("stack")
    from stack import Stack, StackError

    try:
        return action(Stack(settings_or_exit(StackSettings)))
    except StackError as exc:
        fail(str(exc))


@stack_cli.command("install")
def stack_install() -> None:
    """Check java, mvn and PostgreSQL, and fetch the Kafka jars."""
    _stack_or_exit(lambda stack: stack.install())


@stack_cli.command("up")
def stack_up() -> None:
    """Start (or keep) every local service and create the topics, database and bucket."""
    _stack_or_exit(lambda stack: (stack.install(), stack.up()))
    stack_status()


@stack_cli.command("down")
def stack_down() -> None:
    """Stop every local service; their data stays in the stack directory."""
    _stack_or_exit(lambda stack: stack.down())


@stack_cli.command("status")
def stack_status() -> None:
    """Tell what is up and where."""
    statuses = _stack_or_exit(lambda stack: stack.status())
    for status in statuses:
        state = typer.style("up  ", fg=typer.colors.GREEN) if status.up else "down"
        where = f"{status.address:<52} {status.detail}"
        typer.echo(f"{status.name:<9} {state} {where}; log {status.log}")


def main() -> None:
    """Entry point of the ``hoststream`` console script."""
    cli()


if __name__ == "__main__":
    main()
