"""For the gateway's tests: what it published, multipart bodies."""

from __future__ import annotations

from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition

from leadvibe.settings import Settings
from schemas import LeadEvent, decode


async def published(settings: Settings) -> list[tuple[bytes, LeadEvent]]:
    """Every (key, event) on the test's events topic, up to its end offsets now.

    The gateway answers 202 only after Kafka acknowledged every event, so right after a
    response this is all it published: no waiting involved.
    """
    topic = settings.topics.events
    partitions = [TopicPartition(topic, p) for p in range(settings.events_partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        for tp, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, offset)
        records: list[tuple[bytes, LeadEvent]] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for rs in batch.values():
                records += [(r.key, decode(r.value, LeadEvent)) for r in rs]
        return records
    finally:
        await consumer.stop()


async def published_count(settings: Settings) -> int:
    """How many records the events topic holds (its end offsets; nothing is ever deleted)."""
    topic = settings.topics.events
    partitions = [TopicPartition(topic, p) for p in range(settings.events_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def times_published(events: list[tuple[bytes, LeadEvent]]) -> Counter[str]:
    return Counter(event.event_id for _, event in events)


BOUNDARY = "leadvibe-test-boundary"


def multipart(*parts: tuple[str, str | None, bytes], close: bool = True) -> bytes:
    """A multipart/form-data body of (name, filename or None, content) parts, in order.

    ``close=False`` leaves out the closing boundary, as a cut-off upload would.
    """
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: text/csv\r\n"
        body += b"\r\n" + content + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
