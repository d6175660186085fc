"""Publishing events and reading what the scorer produced, for the scorer's tests."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer

from leadvibe.producing import open_producer, publish_batched
from leadvibe.settings import Settings
from schemas import Alias, LeadEvent, decode, encode
from schemas.topics import partition_key
from tests.conftest import Tenant
from tests.waiting import wait_for

T = TypeVar("T", bound=msgspec.Struct)

JUNE = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)


def event(
    unit_id: str,
    event_type: str,
    *,
    lead_id: str | None = None,
    event_id: str | None = None,
    timestamp: datetime = JUNE,
    source: str = "api",
    **aliases: str,
) -> LeadEvent:
    return LeadEvent(
        event_id=event_id or uuid.uuid4().hex,
        unit_id=unit_id,
        lead_id=lead_id,
        aliases=tuple(Alias(kind, value) for kind, value in aliases.items()),  # type: ignore[arg-type]
        event_type=event_type,
        timestamp=timestamp,
        source=source,  # type: ignore[arg-type]
    )


async def publish(settings: Settings, events: list[LeadEvent]) -> None:
    """Publish as the gateway does: keyed by unit."""
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        await publish_batched(
            producer,
            settings.topics.events,
            [(partition_key(e.unit_id), encode(e)) for e in events],
        )


async def read_topic(settings: Settings, topic: str, record_type: type[T], count: int) -> list[T]:
    """The first ``count`` records of ``topic`` (fails after 20 s if there are fewer)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex}",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[T] = []
    try:
        async with asyncio.timeout(20):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                records.extend(decode(r.value, record_type) for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return records


async def create_ruleset(
    gateway: httpx.AsyncClient, tenant: Tenant, rules: dict[str, int], **fields: Any
) -> str:
    body = {
        "name": fields.pop("name", uuid.uuid4().hex[:8]),
        "rules": [{"event_type": t, "points": p} for t, p in rules.items()],
        **fields,
    }
    response = await gateway.post("/rulesets", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    ruleset_id: str = response.json()["id"]
    return ruleset_id


async def get_json(gateway: httpx.AsyncClient, tenant: Tenant, path: str, **params: Any) -> Any:
    response = await gateway.get(path, params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def import_csv(
    gateway: httpx.AsyncClient, tenant: Tenant, csv: str, *, skip_triggers: bool = False
) -> dict[str, Any]:
    """POST /import of ``csv``; its 202 body, which counted no error row."""
    response = await gateway.post(
        "/import",
        params={"skip_triggers": "true" if skip_triggers else "false"},
        files={"file": ("events.csv", csv.encode())},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    assert accepted["errors"] == 0, accepted
    return accepted


async def wait_applied(
    gateway: httpx.AsyncClient, tenant: Tenant, import_id: str
) -> dict[str, Any]:
    """Until the scorer has applied every row the import published; its GET /imports body."""
    return await wait_for(
        lambda: get_json(gateway, tenant, f"/imports/{import_id}"),
        until=lambda body: body["applied"] == body["imported"],
        timeout=60,
        what=f"import {import_id} applied",
    )


async def lead_when(
    gateway: httpx.AsyncClient, tenant: Tenant, path: str, *, event_count: int
) -> Any:
    """Poll ``path`` (a lead) until it shows ``event_count`` events; return it."""

    async def probe() -> Any:
        response = await gateway.get(path, headers=tenant.headers)
        return response.json() if response.status_code == 200 else None

    return await wait_for(
        probe,
        until=lambda lead: lead is not None and lead["event_count"] >= event_count,
        what=f"{path} with {event_count} events",
    )


class LogRecord(NamedTuple):
    """A Kafka record as scorer.log_rows reads one (its LogRecord protocol)."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
