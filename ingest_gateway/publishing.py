"""The gateway's way to Kafka: it starts while Kafka is down, and never hangs on it.

The producer has the options of every producer (``leadvibe.producing.PRODUCER_OPTIONS``),
but it is started on demand: when Kafka does not answer as the gateway starts, the gateway
starts anyway and each publish tries again. Every wait for Kafka is bounded; past the
bound the client gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest_gateway.errors import ServiceUnavailable
from leadvibe.producing import PRODUCER_OPTIONS, publish_batched

log = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 5.0
"""Seconds to reach Kafka (bootstrap and metadata) before answering 503."""
PUBLISH_TIMEOUT: Final = 30.0
"""Seconds one request's records may take to be acknowledged before the answer is 503.

A 10 MB import takes a few seconds; aiokafka's own request timeout is this too, so that
a broker that stops answering fails the records within the bound.
"""
RETRY_AFTER: Final = 5
"""Seconds a client is asked to wait before retrying after a 503."""


class GatewayProducer(AIOKafkaProducer):  # type: ignore[misc]
    """An idempotent, acks=all producer that connects on first use."""

    def __init__(self, bootstrap_servers: str) -> None:
        # A request that Kafka does not answer fails within the publish deadline instead
        # of aiokafka's default 40 s.
        super().__init__(
            bootstrap_servers=bootstrap_servers,
            linger_ms=5,
            request_timeout_ms=int(PUBLISH_TIMEOUT * 1000),
            **PRODUCER_OPTIONS,
        )
        self._started = False
        self._starting = asyncio.Lock()

    async def ensure_started(self) -> None:
        """Start the producer unless it is; raises KafkaError or OSError if Kafka is down."""
        if self._started:
            return
        async with self._starting:
            if not self._started:
                await self.start()
                self._started = True


@asynccontextmanager
async def open_gateway_producer(bootstrap_servers: str) -> AsyncIterator[GatewayProducer]:
    """The gateway's producer: connected now if Kafka answers, else on the first publish."""
    producer = GatewayProducer(bootstrap_servers)
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await producer.ensure_started()
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning(
                "Kafka at %s does not answer (%s); publishing answers 503 until it does",
                bootstrap_servers,
                exc,
            )
        yield producer
    finally:
        await producer.stop()


async def ensure_reachable(producer: AIOKafkaProducer) -> None:
    """Return once the producer is connected; 503 if Kafka does not answer in time."""
    if not isinstance(producer, GatewayProducer):
        return  # a producer opened elsewhere is started already
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await producer.ensure_started()
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("Kafka is unreachable: %s", exc)
        raise ServiceUnavailable(
            "The event log (Kafka) cannot be reached, so nothing was accepted. "
            f"Send the same request again in {RETRY_AFTER} seconds.",
            code="kafka_unavailable",
            retry_after=RETRY_AFTER,
        ) from None


async def publish(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> None:
    """Publish the records and wait until Kafka acknowledged every one; 503 past the deadline.

    ``records`` may be a generator: aiokafka holds at most one unsent batch per partition,
    so memory stays bounded however many records there are, and sending overlaps reading.

    After a 503 some of the records may have been published: a retry that gives its events
    the same ids (same Idempotency-Key) is counted once.
    """
    await ensure_reachable(producer)
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await publish_batched(producer, topic, records)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("publishing to %s failed: %r", topic, exc)
        raise ServiceUnavailable(
            "The event log (Kafka) did not acknowledge every event in time; some may have "
            "been published. Send the same request again with the same Idempotency-Key "
            f"in {RETRY_AFTER} seconds: events already published are not counted twice.",
            code="kafka_unavailable",
            retry_after=RETRY_AFTER,
        ) from None
