"""Creating the topics, with the settings the design needs (idempotent)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas import Topics

log = logging.getLogger(__name__)

# Every topic keeps its records forever: events are the source of truth, scored records
# carry the identity decisions a replay rebuilds from, firings and dead letters are audit.
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


def topic_specs(topics: Topics, partitions: int) -> list[NewTopic]:
    return [
        NewTopic(topics.events, partitions, 1, topic_configs=KEEP_FOREVER),
        NewTopic(topics.scored, partitions, 1, topic_configs=KEEP_FOREVER),
        NewTopic(topics.triggers_fired, partitions, 1, topic_configs=KEEP_FOREVER),
        NewTopic(topics.deadletter, 1, 1, topic_configs=KEEP_FOREVER),
    ]


async def ensure_topics(bootstrap_servers: str, topics: Topics, partitions: int) -> list[str]:
    """Create the topics that do not exist yet; return the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(topics, partitions) if t.name not in existing]
        created: list[str] = []
        for topic in missing:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:  # another process won the race
                pass
        for name in created:
            log.info("created topic %s", name)
        return created
    finally:
        await admin.close()


async def delete_topics(bootstrap_servers: str, topics: Topics) -> None:
    """Delete a namespace's topics (those that exist): for throw-away namespaces of tests."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=30_000)
    await admin.start()
    try:
        names = {t.name for t in topic_specs(topics, 1)} & set(await admin.list_topics())
        if names:
            await admin.delete_topics(sorted(names))
    finally:
        await admin.close()
