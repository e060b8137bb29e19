"""What Faust tables need before a stage may write them."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable
from typing import Any

import faust

log = logging.getLogger(__name__)


async def changelog_partitions_known(app: faust.App, tables: Iterable[Any]) -> None:
    """Wait until the consumer's metadata has the tables' changelog topics.

    On a first start the worker creates them a moment before it reads: a table
    write made before the metadata has them fails its partition check (Faust's
    PartitionsMismatch, "the changelog topic has 0 partitions").
    """
    for table in tables:
        topic = table.changelog_topic.get_topic_name()
        for attempt in itertools.count():
            if app.consumer.topic_partitions(topic):
                break
            if attempt == 100:
                log.warning("still waiting for Kafka metadata of %s after 10 s", topic)
            await asyncio.sleep(0.1)
