"""Checks a worker runs before it starts: fail with one clear line, not a retry loop.

Also creates what the pipeline needs on an existing Kafka or PostgreSQL: the
topics and the medallion schema.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from app.settings import Settings
from collector.publisher import BrokerUnreachable
from sinks.postgres import connect, ensure_schema


def topic_names(settings: Settings) -> list[str]:
    """The topics a pipeline needs: the metrics topic and its dead-letter topic."""
    return [settings.topic, f"{settings.topic}.dlq"]


async def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> None:
    """Create the pipeline's topics when they are missing; raise :class:`BrokerUnreachable`."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=timeout_s)
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            # Another worker may create them between the listing and this call.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name, settings.topic_partitions, settings.replication_factor)
                        for name in missing
                    ]
                )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BrokerUnreachable(
            f"Kafka at {settings.kafka_bootstrap} is unreachable: {exc or type(exc).__name__}"
        ) from None
    finally:
        await admin.close()


async def prepare_postgres(settings: Settings) -> None:
    """Connect and create the medallion schema; raise ``DatabaseUnreachable`` at once
    when PostgreSQL does not answer (a worker started against no database exits)."""
    pool = await connect(settings.postgres_dsn.get_secret_value(), wait=False)
    try:
        await ensure_schema(pool)
    finally:
        await pool.close()


async def prepare_worker(settings: Settings) -> None:
    """Everything a worker needs before it starts consuming."""
    # Faust creates only the last level of its data directory.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await ensure_topics(settings)
    await prepare_postgres(settings)
