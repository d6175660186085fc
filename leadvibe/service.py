"""Running a consumer service: open every resource in one place, loop until stopped.

A consumer rides out its dependencies: when Postgres or Kafka cannot be reached at start,
opening it is tried again with backoff until it can (or the process is told to stop);
once running, the consume loop stops its partitions and retries through an outage
(:mod:`leadvibe.consuming`). With ``LEADVIBE_HEALTH_PORT`` set the process answers
``GET /health`` (:mod:`leadvibe.health`) with what is down meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from leadvibe import logs
from leadvibe.backoff import Backoff, pause
from leadvibe.consuming import ConsumeLoop, Handler, Stopped, open_consumer, stop_on_signals
from leadvibe.db import open_pool
from leadvibe.failures import describe
from leadvibe.health import Check, probe, serving_health
from leadvibe.producing import open_producer
from leadvibe.settings import Settings

R = TypeVar("R", bound=msgspec.Struct)
T = TypeVar("T")

log = logging.getLogger(__name__)

HandlerFactory = Callable[[asyncpg.Pool, AIOKafkaProducer], Handler[R]]
"""Builds a service's batch handler from the pool and producer the runner opened."""


def configure_logging(service: str, settings: Settings | None = None) -> None:
    """The process's logging: format from the settings (:mod:`leadvibe.logs`), level from
    ``LEADVIBE_LOG_LEVEL`` (default INFO)."""
    logs.configure_logging(
        service,
        settings.log_format if settings is not None else "text",
        level=os.environ.get("LEADVIBE_LOG_LEVEL", "INFO"),
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # While Postgres is away the pool logs a traceback at each of its reconnection tries;
    # the consume loop logs the outage once, and /health shows it.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)


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
    partition_fetch_mb: int = 4,
) -> None:
    """Consume ``topic`` as a member of ``group`` until ``stop`` is set (default: SIGTERM/SIGINT).

    The batch in hand when stop is set is finished and committed before everything closes.
    Offsets are stored in Postgres under ``group``; the Kafka group id is qualified by the
    topic namespace (:meth:`schemas.Topics.consumer_group`).
    ``producer_linger_ms`` is the producer's linger (see :func:`open_producer`),
    ``server_settings`` the Postgres settings of the pool's connections,
    ``partition_fetch_mb`` the most a fetch brings of one partition (:func:`open_consumer`).
    """
    stop = stop or stop_on_signals()
    health = ConsumerHealth(topic)
    bootstrap = settings.kafka_bootstrap_servers
    async with serving_health(settings.health_port, health.checks), AsyncExitStack() as stack:
        health.pool = pool = await health.open(
            stack,
            "postgres",
            lambda: open_pool(settings.database_url, server_settings=server_settings),
            stop,
        )
        producer = await health.open(
            stack, "kafka", lambda: open_producer(bootstrap, linger_ms=producer_linger_ms), stop
        )
        health.consumer = consumer = await health.open(
            stack,
            "kafka",
            lambda: open_consumer(
                bootstrap,
                settings.topics.consumer_group(group),
                partition_fetch_mb=partition_fetch_mb,
            ),
            stop,
        )
        if pool is None or producer is None or consumer is None:
            return  # stopped before everything could be opened
        health.loop = ConsumeLoop(
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
        await health.loop.run(stop)


class ConsumerHealth:
    """What a consumer process's ``/health`` reports: its dependencies and its partitions."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.pool: asyncpg.Pool | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.loop: ConsumeLoop[Any] | None = None
        self.unreachable: dict[str, str] = {}
        """Why a dependency could not be opened yet, while starting."""

    async def open(
        self,
        stack: AsyncExitStack,
        name: str,
        opener: Callable[[], AbstractAsyncContextManager[T]],
        stop: asyncio.Event,
    ) -> T | None:
        """Enter ``opener()`` on ``stack``, retrying with backoff; None if stopped first."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                resource = await stack.enter_async_context(opener())
            except Exception as exc:
                if name not in self.unreachable:
                    log.error("cannot reach %s (%s); retrying with backoff", name, describe(exc))
                self.unreachable[name] = f"cannot connect yet: {describe(exc)}"
                await pause(stop, backoff.next_delay())
                continue
            if self.unreachable.pop(name, None) is not None:
                log.warning("%s reached", name)
            return resource
        return None

    async def checks(self) -> dict[str, Check]:
        return {
            "postgres": await self._postgres(),
            "kafka": await self._kafka(),
            "partitions": self._partitions(),
        }

    async def _postgres(self) -> Check:
        if self.pool is None:
            return Check(False, self.unreachable.get("postgres", "not connected yet"))
        return await probe("Postgres", partial(self.pool.fetchval, "SELECT 1"))

    async def _kafka(self) -> Check:
        if self.consumer is None:
            return Check(False, self.unreachable.get("kafka", "not connected yet (after Postgres)"))
        return await probe("Kafka", self.consumer.topics)  # a metadata request to the brokers

    def _partitions(self) -> Check:
        if self.loop is None or self.consumer is None:
            return Check(False, "not consuming yet")
        if self.loop.stopped:
            return Check(False, "; ".join(_stopped(self.topic, self.loop.stopped)))
        assigned = sorted(tp.partition for tp in self.consumer.assignment())
        return Check(True, f"consuming {self.topic}{assigned}")


def _stopped(topic: str, stopped: Mapping[int, Stopped]) -> list[str]:
    return [
        f"stopped: {topic}[{p}] since {s.since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        f" ({(datetime.now(UTC) - s.since).total_seconds():.0f} s): system fault {s.reason}"
        for p, s in sorted(stopped.items())
    ]
