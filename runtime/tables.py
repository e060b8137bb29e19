"""What Faust tables need before a stage may write them."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable
from typing import Any

import faust

log = logging.getLogger(__name__)


async def changelog_partitions_known(
    app: faust.App, source_topic: str, tables: Iterable[Any]
) -> None:
    """Wait until the tables' first write can pass Faust's partition check.

    On a first start the worker creates the changelog topics a moment before it
    reads: a table write made while the group's metadata has ``source_topic`` but a
    changelog with 0 partitions fails that check (Faust's PartitionsMismatch). Faust
    skips the check when the metadata lacks ``source_topic``, as it does for a static
    member rejoining: the group's leader alone keeps that metadata, and a static
    member that rejoins is handed its old assignment without the leader's step.
    """
    for table in tables:
        topic = table.changelog_topic.get_topic_name()
        for attempt in itertools.count():
            if app.consumer.topic_partitions(topic) or (
                app.consumer.topic_partitions(source_topic) is None
            ):
                break
            if attempt == 100:
                log.warning("still waiting for Kafka metadata of %s after 10 s", topic)
            await asyncio.sleep(0.1)
