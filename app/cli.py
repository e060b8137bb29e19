"""The ``hoststream`` command: the local stack, the collector, the worker, and all at once."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from app.settings import Settings, UnknownSetting, load_settings
from collector.publisher import BrokerUnreachable

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


def run_checked(work: Callable[[], Any], loop_factory: Callable[[], Any] | None = None) -> Any:
    """Run a coroutine function, turning unreachable services into one line and exit 1."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(work())
    except _unreachable() as exc:
        fail(str(exc))


def _unreachable() -> tuple[type[Exception], ...]:
    # sinks.postgres (asyncpg, ~10 MB) is imported only by the commands that use the
    # database, so the collector never loads it: its error can only occur once it is.
    postgres = sys.modules.get("sinks.postgres")
    if postgres is None:
        return (BrokerUnreachable,)
    return (BrokerUnreachable, postgres.DatabaseUnreachable)


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
    from collector.gpu import NvidiaGpus
    from collector.sampler import Sampler

    settings = settings_or_exit(interval_s=interval)
    _configure_logging()
    sampler = Sampler(
        settings.host_id, settings.interval_s, settings.tag_pairs, gpus=NvidiaGpus.open()
    )
    count = 1 if once else count
    if print_:
        from collector.schedule import next_tick
        from schemas.metrics import to_json

        for taken in range(count or 1):
            if taken:
                time.sleep(max(0.0, next_tick(time.time(), settings.interval_s) - time.time()))
            typer.echo(to_json(sampler.sample(), indent=True).decode())
        return
    run_checked(lambda: _publish(settings, sampler, count), loop_factory=_event_loop_factory())


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop's loop runs the collector's few wakeups a second in C: a third less CPU.
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _publish(settings: Settings, sampler: Any, count: int | None) -> None:
    from collector.publisher import Publisher
    from collector.run import collect as collect_loop
    from collector.spool import Spool, SpoolLocked, spool_directory

    # aiokafka logs every failed reconnect; the collector says it once (collector/run.py).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        spool = Spool(
            spool_directory(settings.collector_dir, settings.topic, settings.host_id),
            settings.spool_max_bytes,
        )
    except SpoolLocked as exc:
        fail(str(exc))
    try:
        publisher = Publisher(settings.bootstrap_servers, settings.topic)
        await publisher.start()
        logging.getLogger("hoststream.collect").info(
            "sampling %s (host id %s) every %.3g s into %s at %s",
            sampler.hostname,
            settings.host_id,
            settings.interval_s,
            settings.topic,
            settings.kafka_bootstrap,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await collect_loop(sampler, publisher, spool, count, stop)
        finally:
            await publisher.stop()
    finally:
        spool.close()
        sampler.close()


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
    from app.preflight import prepare_worker

    settings = settings_or_exit()
    run_checked(lambda: prepare_worker(settings))

    import faust
    import mode.loop

    # uvloop runs Faust's per-event machinery about 15 % faster (measured in FACTS.md);
    # it must be the loop policy before the worker creates its loop.
    mode.loop.use("uvloop")
    from app import pipeline  # noqa: F401  (registers the agents, tables and pages)
    from app.core import app
    from app.quiet_logs import quiet_repeats

    worker = faust.Worker(app, loglevel=loglevel)
    # aiokafka and Faust log every message sent at debug level, and the worker's
    # logging setup leaves their loggers enabled for it: a few percent of the CPU.
    level = max(logging.INFO, logging.getLevelNamesMapping().get(loglevel.upper(), logging.INFO))
    for name in ("aiokafka", "faust"):
        logging.getLogger(name).setLevel(level)
    quiet_repeats("aiokafka")
    # The worker allocates a dozen tracked objects per record, few of them in cycles:
    # at Python's default threshold (700) the young generation was collected every
    # few dozen records, and every full collection walked the modules and the app
    # built at start. Those frozen and the threshold raised, a record cost 11-15 %
    # less CPU in four paired runs of the benchmark.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    worker.execute_from_commandline()


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
            default = "" if name == "host_id" else field.get_default()
            if hasattr(default, "get_secret_value"):
                default = default.get_secret_value()
            if isinstance(default, bool):
                default = str(default).lower()
            shown = (
                f"`{default}`" if default not in ("", None) else _UNSET_DEFAULTS.get(name, "(none)")
            )
            env = f"`HOSTSTREAM_{name.upper()}`"
            typer.echo(f"| {name} | {env} | {shown} | {field.description or ''} |")
        return
    settings = settings_or_exit()
    for name, value in settings.model_dump().items():
        typer.echo(f"HOSTSTREAM_{name.upper()}={value}")


_UNSET_DEFAULTS = {
    "kafka_bootstrap": "(local stack)",
    "postgres_dsn": "(local stack)",
    "gcs_emulator_host": "(local stack)",
    "bigquery_emulator_host": "(local stack)",
    "host_id": "(machine id)",
}


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
