"""Checks a worker runs before it starts: fail with one clear line, not a retry loop.

Also creates what the pipeline needs on an existing Kafka or PostgreSQL: the
topics and the medallion schema (``MedallionDb.open`` ensures it).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from collector.publisher import BrokerUnreachable
from config import WorkerSettings
from sinks.medallion_db import MedallionDb


def topic_names(settings: WorkerSettings) -> list[str]:
    """The topics a pipeline needs: the metrics topic and its dead-letter topic."""
    return [settings.topic, f"{settings.topic}.dlq"]


async def ensure_topics(settings: WorkerSettings, timeout_s: float = 15.0) -> None:
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


async def prepare_worker(settings: WorkerSettings) -> MedallionDb:
    """Create what the worker needs and open the database (ensuring its schema, once per
    start); raise ``BrokerUnreachable`` or ``DatabaseUnreachable`` at once when Kafka or
    PostgreSQL does not answer (a worker started against no service exits)."""
    # Faust creates only the last level of its data directory.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await ensure_topics(settings)
    return await MedallionDb.open(settings.postgres_dsn.get_secret_value(), wait=False)
