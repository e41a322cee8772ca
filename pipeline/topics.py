"""The three topics. Values are raw bytes: each topic's codec lives in its own module
(taps, outcomes, dead_letters), so a record that does not decode reaches the agent
and can be dead-lettered instead of crashing Faust's deserializer."""

from __future__ import annotations

import logging

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.clients import kafka_admin
from pipeline.settings import Settings

log = logging.getLogger("rollcall.topics")


def topic_names(settings: Settings) -> tuple[str, str, str]:
    return settings.taps_topic, settings.events_topic, settings.dlq_topic


async def ensure_topics(settings: Settings) -> None:
    """Create the topics with TOPIC_PARTITIONS partitions if they are missing.

    Producers that write before any worker started (the ingress) would
    otherwise get a broker-default topic with the wrong partition count.
    """
    admin = kafka_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1)
            for name in topic_names(settings)
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
