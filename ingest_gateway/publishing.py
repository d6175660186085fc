"""The gateway's way to Kafka: it starts while Kafka is down, and never hangs on it.

The producer has the options of every producer (``leadvibe.producing.PRODUCER_OPTIONS``),
but it is started on demand: when Kafka does not answer as the gateway starts, the gateway
starts anyway and each publish tries again. Every wait for Kafka is bounded; past the
bound the client gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from ingest_gateway.errors import ServiceUnavailable
from leadvibe.producing import PRODUCER_OPTIONS, murmur2, publish_batched

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


ReadyBatch = tuple[int, Any]
"""A partition and a record batch for it (aiokafka's BatchBuilder, from the producer's
``create_batch``), filled: what :func:`publish_stream` sends as it is."""

STREAM_TIMEOUT: Final = 3 * PUBLISH_TIMEOUT
"""Seconds an import's events may take from the first parsed to the last acknowledged, the
parsing that overlaps publishing included (each wait for Kafka is also bounded by
PUBLISH_TIMEOUT). ``recovery.STALE_AFTER`` is longer than this and CONNECT_TIMEOUT."""


def _unavailable(topic: str, exc: BaseException) -> ServiceUnavailable:
    log.warning("publishing to %s failed: %r", topic, exc)
    return ServiceUnavailable(
        "The event log (Kafka) did not acknowledge every event in time; some may have "
        "been published. Send the same request again with the same Idempotency-Key "
        f"in {RETRY_AFTER} seconds: events already published are not counted twice.",
        code="kafka_unavailable",
        retry_after=RETRY_AFTER,
    )


async def partitions_of(producer: AIOKafkaProducer, topic: str) -> list[int]:
    """The topic's partitions, in order; 503 if Kafka does not answer in time."""
    await ensure_reachable(producer)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return sorted(await producer.partitions_for(topic))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _unavailable(topic, exc) from None


class RecordBatches:
    """Records → filled record batches, one open batch per partition; no I/O, so that a
    worker thread can do this per-record work while the event loop sends.

    A record's partition is the producer's default partitioner's (and Java's), from its key.
    """

    def __init__(self, producer: AIOKafkaProducer, partitions: Sequence[int]) -> None:
        self._new_batch = producer.create_batch  # builds an object; touches no shared state
        self._partitions = partitions
        self._open: dict[int, Any] = {}

    def partition(self, key: bytes) -> int:
        return self._partitions[(murmur2(key) & 0x7FFFFFFF) % len(self._partitions)]

    def add(self, partition: int, key: bytes, value: bytes, filled: list[ReadyBatch]) -> None:
        """Append the record; a batch it fills goes to ``filled``."""
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._new_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            filled.append((partition, batch))
            batch = self._open[partition] = self._new_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise MessageSizeTooLargeError(f"a record of {len(value)} bytes")

    def rest(self) -> list[ReadyBatch]:
        """The batches not filled, once there are no more records."""
        rest = list(self._open.items())
        self._open.clear()
        return rest


async def publish_stream(
    producer: AIOKafkaProducer, topic: str, chunks: AsyncIterator[Sequence[ReadyBatch]]
) -> None:
    """Send the record batches of ``chunks`` as they come; return once Kafka acknowledged
    all of them.

    What :func:`publish` does, for records still being made: the batches are filled
    elsewhere (:class:`RecordBatches`, in a worker thread) while those before are sent, so
    that making the records overlaps sending them and the event loop does no per-record
    work. Errors of ``chunks`` go through unchanged; Kafka's, and waiting for it past
    PUBLISH_TIMEOUT (or for the whole stream past STREAM_TIMEOUT), answer 503. After a
    503 some records may have been published (see :func:`publish`).
    """
    pending: list[asyncio.Future[Any]] = []
    try:
        async with asyncio.timeout(STREAM_TIMEOUT):
            async for chunk in chunks:
                for partition, batch in chunk:
                    try:
                        async with asyncio.timeout(PUBLISH_TIMEOUT):
                            sent = await producer.send_batch(batch, topic, partition=partition)
                    except (KafkaError, OSError, TimeoutError) as exc:
                        raise _unavailable(topic, exc) from None
                    pending.append(sent)
            try:
                if pending:
                    async with asyncio.timeout(PUBLISH_TIMEOUT):
                        await asyncio.gather(*pending)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise _unavailable(topic, exc) from None
    except TimeoutError as exc:  # STREAM_TIMEOUT
        raise _unavailable(topic, exc) from None
    finally:
        for future in pending:  # after a failure: no "exception never retrieved" warnings
            future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
