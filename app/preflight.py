"""Checks a worker runs before it starts: fail with one clear line, not a retry loop.

Also creates what the pipeline needs on an existing Kafka or PostgreSQL: the
topics and the medallion schema (``MedallionDb.open`` ensures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from collector.publisher import BrokerUnreachable
from config import WorkerSettings
from sinks.gcs import GcsBucket
from sinks.medallion_db import MedallionDb

log = logging.getLogger(__name__)


def alerts_topic(settings: WorkerSettings) -> str:
    """The topic of the alert events (agents/alerts.py), keyed by host."""
    return f"{settings.topic}.alerts"


def topic_names(settings: WorkerSettings) -> list[str]:
    """The topics a pipeline needs: the metrics topic, its dead-letter topic and the
    alerts topic."""
    return [settings.topic, f"{settings.topic}.dlq", alerts_topic(settings)]


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
    PostgreSQL does not answer (a worker started against no service exits), and
    ``BucketUnusable`` for a lake bucket that is missing or forbidden."""
    # Faust creates only the last level of its data directory.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await ensure_topics(settings)
    if settings.lake_enabled:
        await check_lake_bucket(settings)
    return await MedallionDb.open(settings.postgres_dsn.get_secret_value(), wait=False)


async def check_lake_bucket(settings: WorkerSettings) -> None:
    """Raise :class:`~sinks.gcs.BucketUnusable` when GCS says the lake's bucket is missing
    or forbidden; when GCS does not answer, say so and go on (the lake waits for it, the
    medallion does not need it)."""
    bucket = GcsBucket(settings.gcs_bucket, settings.gcs_emulator_host or None)
    try:
        unreachable = await bucket.check()
    finally:
        await bucket.close()
    if unreachable is not None:
        log.warning(
            "GCS does not answer for gs://%s (%s): the lake waits for it, the rest starts",
            settings.gcs_bucket,
            unreachable,
        )
