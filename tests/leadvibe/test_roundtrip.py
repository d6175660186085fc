"""The first trip through the real broker and database: aiokafka against Kafka 4.x."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from leadvibe.producing import open_producer, publish_all
from leadvibe.settings import Settings
from schemas import Alias, LeadEvent, decode, encode

pytestmark = pytest.mark.integration


async def test_event_goes_through_kafka_into_postgres_and_back(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    sent = LeadEvent(
        event_id=uuid.uuid4().hex,
        unit_id="ou_test",
        aliases=(Alias("email", "jane@acme.com"),),
        event_type="page_view",
        timestamp=datetime(2025, 6, 15, 10, 30, tzinfo=UTC),
        source="import",
        skip_triggers=True,
        import_id="imp_1",
        row=2,
    )
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        assert await publish_all(producer, settings.topics.events, [(b"k", encode(sent))]) == 1

    consumer = AIOKafkaConsumer(
        settings.topics.events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batch = await consumer.getone()
    finally:
        await consumer.stop()
    received = decode(batch.value, LeadEvent)
    assert received == sent

    await pool.execute("CREATE TABLE probe (event_id text PRIMARY KEY, body bytea NOT NULL)")
    await pool.execute("INSERT INTO probe VALUES ($1, $2)", received.event_id, encode(received))
    stored = await pool.fetchval("SELECT body FROM probe WHERE event_id = $1", sent.event_id)
    assert decode(stored, LeadEvent) == sent
