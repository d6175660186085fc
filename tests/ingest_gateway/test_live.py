"""POST /ingest's way to Kafka: the budget (pure), shared batches and the bound, for real."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from starlette.types import Receive, Scope, Send

from ingest_gateway.app import create_app
from ingest_gateway.live import Budget, LiveEvents
from ingest_gateway.publishing import open_gateway_producer
from leadvibe.producing import SharedBatches
from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.ingest_gateway.helpers import published, published_count

# -- the budget -------------------------------------------------------------------------


async def test_the_budget_grants_at_once_while_there_is_room() -> None:
    budget = Budget(100)
    assert await budget.take(60, timeout=1) == 60
    assert await budget.take(40, timeout=1) == 40
    assert budget.used == 100


async def test_a_request_larger_than_the_budget_takes_all_of_it() -> None:
    budget = Budget(100)
    assert await budget.take(1_000, timeout=1) == 100
    budget.give(100)
    assert budget.used == 0


async def test_waiters_are_served_in_arrival_order_as_room_comes_back() -> None:
    budget = Budget(100)
    await budget.take(100, timeout=1)
    first = asyncio.create_task(budget.take(80, timeout=5))
    second = asyncio.create_task(budget.take(10, timeout=5))
    await asyncio.sleep(0)
    assert budget.try_take(1) is None  # no one overtakes those waiting
    budget.give(100)
    assert await first == 80
    assert await second == 10
    assert budget.used == 90


async def test_a_waiter_past_its_timeout_gets_none_and_leaves_the_line() -> None:
    budget = Budget(100)
    await budget.take(100, timeout=1)
    assert await budget.take(50, timeout=0.01) is None
    budget.give(100)
    assert budget.used == 0
    assert budget.try_take(100) == 100


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    budget = Budget(10)
    await budget.take(10, timeout=1)
    waiter = asyncio.create_task(budget.take(5, timeout=5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.give(10)
    assert budget.used == 0


# -- shared batches, with Kafka ---------------------------------------------------------


@pytest.mark.integration
async def test_concurrent_callers_share_batches_and_each_gets_its_own(settings: Settings) -> None:
    topic = settings.topics.events
    async with open_gateway_producer(settings.kafka_bootstrap_servers) as producer:
        sent = 0
        send_batch = producer.send_batch

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return await send_batch(*args, **kwargs)

        producer.send_batch = counting
        batches = SharedBatches(producer, topic)
        callers = 50
        counts = await asyncio.gather(
            *(batches.publish([(b"unit:lead", b"%d" % n)]) for n in range(callers))
        )
    assert counts == [1] * callers
    assert sent < callers / 2  # one record per request, far fewer batches
    values = sorted(int(event_bytes) for _, event_bytes in await _raw(settings))
    assert values == list(range(callers))


async def _raw(settings: Settings) -> list[tuple[bytes, bytes]]:
    topic = settings.topics.events
    partitions = [TopicPartition(topic, p) for p in range(settings.events_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[bytes, bytes]] = []
        while len(found) < sum(ends.values()):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                found += [(r.key, r.value) for r in records]
        return found
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_past_the_bound_a_request_waits_then_gets_429(
    settings: Settings, tenant: Tenant
) -> None:
    # The whole bound held (as by requests Kafka has not answered yet): the request waits
    # its 0.2 s in line, then 429; once the room comes back, 202.
    tight = replace(settings, ingest_buffer_bytes=1024 * 1024, ingest_wait_seconds=0.2)
    app = create_app(tight)
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        live: LiveEvents = state["gateway"].live

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            held = await live.budget.take(live.budget.capacity, timeout=1)
            assert held is not None
            event = {"lead_id": "ld_1", "event_type": "page_view"}
            response = await client.post("/ingest", json=event, headers=tenant.headers)
            assert response.status_code == 429, response.text
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"] == "too_busy"
            assert await published_count(settings) == 0
            live.budget.give(held)
            response = await client.post("/ingest", json=event, headers=tenant.headers)
            assert response.status_code == 202, response.text
    assert len(await published(settings)) == 1
