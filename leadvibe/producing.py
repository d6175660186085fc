"""Publishing to Kafka: one idempotent, acks=all producer per process, batched sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer


@asynccontextmanager
async def open_producer(
    bootstrap_servers: str, **options: object
) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer that waits for every in-sync replica and never duplicates on retry."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        compression_type=None,
        **options,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def publish_all(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Send every (key, value) without awaiting each, then wait until Kafka acknowledged all.

    Raises the first send error (KafkaError) if any record was not acknowledged.
    """
    pending = [await producer.send(topic, value, key=key) for key, value in records]
    if pending:
        await asyncio.gather(*pending)
    return len(pending)
