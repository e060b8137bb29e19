"""The ``hoststream`` command: the local stack, the collector, the worker, and all at once."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from pydantic import ValidationError

from app.settings import Settings, UnknownSetting, load_settings
from collector.publisher import BrokerUnreachable
from sinks.postgres import DatabaseUnreachable

T = TypeVar("T")

cli = typer.Typer(
    help="hoststream: host metrics from every machine into Kafka, PostgreSQL, GCS and BigQuery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_cli = typer.Typer(help="The local stack: Kafka, PostgreSQL, GCS and BigQuery emulators.")
cli.add_typer(stack_cli, name="stack")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line on stderr and exit: what a user sees instead of a traceback."""
    typer.secho(f"hoststream: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    """The settings, or one line per bad variable and exit status 2."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except UnknownSetting as exc:
        fail(f"bad configuration: {exc}", code=2)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"HOSTSTREAM_{field.upper()}" if field else "configuration"
            lines.append(f"{name}: {error['msg']}")
        fail("bad configuration:\n  " + "\n  ".join(lines), code=2)


def run_checked(work: Callable[[], Any]) -> Any:
    """Run a coroutine function, turning unreachable services into one line and exit 1."""
    try:
        return asyncio.run(work())
    except (BrokerUnreachable, DatabaseUnreachable) as exc:
        fail(str(exc))


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@cli.command()
def collect(
    once: Annotated[bool, typer.Option(help="Take a single sample.")] = False,
    print_: Annotated[
        bool, typer.Option("--print", help="Print samples as JSON instead of sending them.")
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many samples.")] = None,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between samples [HOSTSTREAM_INTERVAL_S].")
    ] = None,
) -> None:
    """Sample this host every interval and publish to Kafka (keyed by host id)."""
    from collector.publisher import Publisher
    from collector.run import collect as collect_loop
    from collector.sampler import Sampler

    settings = settings_or_exit(interval_s=interval)
    _configure_logging()
    sampler = Sampler(settings.host_id, settings.interval_s)
    count = 1 if once else count
    if print_:
        for _ in range(count or 1):
            typer.echo(orjson.dumps(sampler.sample(), option=orjson.OPT_INDENT_2).decode())
        return

    async def work() -> None:
        publisher = Publisher(settings.bootstrap_servers, settings.topic)
        await publisher.start()
        logging.getLogger("hoststream.collect").info(
            "sampling %s every %.3g s into %s at %s",
            settings.host_id,
            settings.interval_s,
            settings.topic,
            settings.kafka_bootstrap,
        )
        try:
            await collect_loop(sampler, publisher, count)
        finally:
            await publisher.stop()

    run_checked(work)


@cli.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Worker log level.")] = "info",
) -> None:
    """Start a Faust worker: bronze and silver agents and the web server."""
    from app.preflight import prepare_worker

    settings = settings_or_exit()
    run_checked(lambda: prepare_worker(settings))

    import faust

    from app.core import app

    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


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
    from app.runner import run_pipeline

    settings = settings_or_exit(interval_s=interval)
    _stack_or_exit(lambda stack: (stack.install(), stack.up()))
    sys.exit(run_pipeline(settings, duration))


@cli.command()
def config(
    markdown: Annotated[bool, typer.Option(help="Print the table of every setting.")] = False,
) -> None:
    """Print the settings in force (secrets hidden), or every setting as a Markdown table."""
    if markdown:
        typer.echo("| setting | environment variable | default | meaning |")
        typer.echo("|---|---|---|---|")
        for name, field in Settings.model_fields.items():
            default = "hostname" if name == "host_id" else field.get_default()
            if hasattr(default, "get_secret_value"):
                default = default.get_secret_value()
            if isinstance(default, bool):
                default = str(default).lower()
            shown = f"`{default}`" if default not in ("", None) else "(local stack)"
            env = f"`HOSTSTREAM_{name.upper()}`"
            typer.echo(f"| {name} | {env} | {shown} | {field.description or ''} |")
        return
    settings = settings_or_exit()
    for name, value in settings.model_dump().items():
        typer.echo(f"HOSTSTREAM_{name.upper()}={value}")


def _stack_or_exit(action: Callable[[Any], T]) -> T:
    from stack import Stack, StackError

    try:
        return action(Stack(settings_or_exit()))
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
