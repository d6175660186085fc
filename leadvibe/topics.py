"""Creating the topics, with the settings the design needs (idempotent), and checking the
replication of those that exist against the settings.

Replication comes from the settings (``LEADVIBE_REPLICATION_FACTOR``,
``LEADVIBE_MIN_INSYNC_REPLICAS``; 1 and 1 locally). With the producers' ``acks=all``, a
record counts as sent once ``min.insync.replicas`` brokers have it. At creation every topic
gets both; at every ``leadvibe topics create`` (each start of ``make run`` and of compose's
``migrate``) the cluster is checked: fewer brokers than the replication factor is an error
(:class:`ReplicationError`, nothing is created), and an existing topic with fewer replicas
or a lower ``min.insync.replicas`` than configured is a warning naming the command that
fixes it, since raising them is a partition reassignment an operator runs, not something
to do behind their back or to refuse to start over.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from schemas import Topics

log = logging.getLogger(__name__)

# Every topic keeps its records forever: events are the source of truth, scored records
# carry the identity decisions a replay rebuilds from, firings and dead letters are audit.
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
MIN_INSYNC = "min.insync.replicas"


@dataclass(frozen=True)
class Replication:
    """How many brokers keep each partition, and how many must have a record before an
    ``acks=all`` send succeeds."""

    factor: int = 1
    min_insync: int = 1


LOCAL = Replication()


class ReplicationError(RuntimeError):
    """The cluster cannot give the topics the replication the settings ask for."""


@dataclass(frozen=True)
class TopicReplication:
    """What the cluster has for one existing topic."""

    factor: int
    """The fewest replicas any of its partitions has."""
    min_insync: int


def topic_specs(
    topics: Topics, partitions: int, replication: Replication = LOCAL
) -> list[NewTopic]:
    rf = replication.factor
    configs = {**KEEP_FOREVER, MIN_INSYNC: str(replication.min_insync)}
    return [
        NewTopic(topics.events, partitions, rf, topic_configs=configs),
        NewTopic(topics.scored, partitions, rf, topic_configs=configs),
        NewTopic(topics.triggers_fired, partitions, rf, topic_configs=configs),
        NewTopic(topics.deadletter, 1, rf, topic_configs=configs),
    ]


def replication_warnings(
    wanted: Replication, existing: Mapping[str, TopicReplication]
) -> list[str]:
    """A sentence for each existing topic replicated less than the settings ask."""
    warnings = []
    for name, found in sorted(existing.items()):
        if found.factor < wanted.factor:
            warnings.append(
                f"topic {name} has {found.factor} replica(s) per partition but "
                f"LEADVIBE_REPLICATION_FACTOR is {wanted.factor}: a 202 is only as durable as "
                f"{found.factor} broker(s); raise it with kafka-reassign-partitions.sh"
            )
        if found.min_insync < wanted.min_insync:
            warnings.append(
                f"topic {name} has min.insync.replicas={found.min_insync} but "
                f"LEADVIBE_MIN_INSYNC_REPLICAS is {wanted.min_insync}; raise it with "
                f"kafka-configs.sh --alter --entity-type topics --entity-name {name} "
                f"--add-config min.insync.replicas={wanted.min_insync}"
            )
    return warnings


def check_brokers(wanted: Replication, brokers: int) -> None:
    """ReplicationError when the cluster has fewer brokers than the replication factor."""
    if brokers < wanted.factor:
        raise ReplicationError(
            f"LEADVIBE_REPLICATION_FACTOR is {wanted.factor} but the Kafka cluster has "
            f"{brokers} broker(s): topics cannot be created with that many replicas. "
            "Add brokers, or lower LEADVIBE_REPLICATION_FACTOR (1 for a single local broker)."
        )


async def _existing_replication(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, TopicReplication]:
    if not names:
        return {}
    factors = {
        t["topic"]: min((len(p["replicas"]) for p in t["partitions"]), default=0)
        for t in await admin.describe_topics(names)
        if t["error_code"] == 0
    }
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, {MIN_INSYNC: None}) for name in factors]
    )
    min_insync = {
        resource["resource_name"]: int(entry["config_value"])
        for response in responses
        for resource in response.to_object()["resources"]
        for entry in resource["config_entries"]
        if entry["config_names"] == MIN_INSYNC
    }
    return {
        name: TopicReplication(factor=rf, min_insync=min_insync.get(name, 1))
        for name, rf in factors.items()
    }


async def ensure_topics(
    bootstrap_servers: str,
    topics: Topics,
    partitions: int,
    replication: Replication = LOCAL,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created now.

    Raises ReplicationError when the cluster has fewer brokers than the replication
    factor; logs a warning for each existing topic replicated less than asked.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=30_000)
    await admin.start()
    try:
        check_brokers(replication, len((await admin.describe_cluster())["brokers"]))
        specs = topic_specs(topics, partitions, replication)
        existing = set(await admin.list_topics())
        ours = [t.name for t in specs if t.name in existing]
        for warning in replication_warnings(replication, await _existing_replication(admin, ours)):
            log.warning("%s", warning)
        created: list[str] = []
        for topic in (t for t in specs if t.name not in existing):
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
