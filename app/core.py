"""The Faust app: built by :func:`create_app` from :class:`~app.settings.Settings`.

The module-level ``app`` is what agents, topics and tables attach to; it reads
the settings once, when this module is first imported.
"""

from __future__ import annotations

from app.consumer import BatchingApp
from app.settings import Settings, load_settings


def create_app(settings: Settings) -> BatchingApp:
    """A Faust app wired to the settings' broker, store and web server."""
    return BatchingApp(
        settings.app_id,
        broker=settings.faust_broker_url,
        store=settings.store,
        # Per app id: RocksDB state belongs to one consumer group's changelogs, and
        # Faust refuses to start on state another group (or an older Kafka) wrote.
        datadir=str(settings.data_dir / settings.app_id),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        # Faust's default (60 s) makes a restarted worker wait that long for its
        # old membership to expire before it gets partitions back.
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        # A new consumer group starts at the beginning: samples produced before
        # the first worker started are processed, not skipped.
        consumer_auto_offset_reset="earliest",
        # One fetch is one batch (see app/consumer.py).
        broker_max_poll_records=settings.batch_max_records,
        key_serializer="raw",
        value_serializer="raw",
    )


settings = load_settings()
app = create_app(settings)
