"""Running a consumer service: open every resource in one place, loop until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from leadvibe.consuming import ConsumeLoop, Handler, open_consumer, stop_on_signals
from leadvibe.db import open_pool
from leadvibe.producing import open_producer
from leadvibe.settings import Settings

R = TypeVar("R", bound=msgspec.Struct)

HandlerFactory = Callable[[asyncpg.Pool, AIOKafkaProducer], Handler[R]]
"""Builds a service's batch handler from the pool and producer the runner opened."""


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LEADVIBE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


async def run_consumer(
    settings: Settings,
    *,
    topic: str,
    group: str,
    record_type: type[R],
    make_handler: HandlerFactory[R],
    stop: asyncio.Event | None = None,
    max_records: int = 5000,
    producer_linger_ms: int = 5,
    server_settings: Mapping[str, str] | None = None,
) -> None:
    """Consume ``topic`` as a member of ``group`` until ``stop`` is set (default: SIGTERM/SIGINT).

    The batch in hand when stop is set is finished and committed before everything closes.
    Offsets are stored in Postgres under ``group``; the Kafka group id is qualified by the
    topic namespace (:meth:`schemas.Topics.consumer_group`).
    ``producer_linger_ms`` is the producer's linger (see :func:`open_producer`),
    ``server_settings`` the Postgres settings of the pool's connections.
    """
    stop = stop or stop_on_signals()
    async with (
        open_pool(settings.database_url, server_settings=server_settings) as pool,
        open_producer(settings.kafka_bootstrap_servers, linger_ms=producer_linger_ms) as producer,
        open_consumer(
            settings.kafka_bootstrap_servers, settings.topics.consumer_group(group)
        ) as consumer,
    ):
        loop = ConsumeLoop(
            consumer=consumer,
            producer=producer,
            pool=pool,
            topic=topic,
            deadletter_topic=settings.topics.deadletter,
            group=group,
            record_type=record_type,
            handler=make_handler(pool, producer),
            max_records=max_records,
        )
        await loop.run(stop)
