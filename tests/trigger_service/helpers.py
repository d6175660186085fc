"""Building scored records and publishing them as the scorer does, for the trigger tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from leadvibe.producing import open_producer, publish_batched
from leadvibe.settings import Settings
from schemas import ScoredEvent, encode
from tests.conftest import TEST_DELIVERY_POLICY, Tenant
from tests.trigger_service.receiver import Receiver
from tests.waiting import wait_for
from trigger_service import store
from trigger_service.delivery import DeliveryPolicy
from trigger_service.service import GROUP, firing_id, run
from trigger_service.store import FiringRow

JUNE = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
_event_ids = itertools.count(1)


def scored(
    unit_id: str,
    lead_id: str,
    before: int,
    after: int,
    *,
    event_type: str = "page_view",
    event_id: str | None = None,
    skip_triggers: bool = False,
    replay: bool = False,
) -> ScoredEvent:
    return ScoredEvent(
        event_id=event_id or f"ev{next(_event_ids):08d}",
        unit_id=unit_id,
        lead_id=lead_id,
        event_type=event_type,
        timestamp=JUNE,
        points=after - before,
        score_before=before,
        score_after=after,
        skip_triggers=skip_triggers,
        source="api",
        replay=replay,
    )


def path_of(unit_id: str, lead_id: str, scores: Iterable[int], **fields: Any) -> list[ScoredEvent]:
    """The records of a lead whose score goes 0 -> scores[0] -> scores[1] ..."""
    records = []
    before = 0
    for after in scores:
        records.append(scored(unit_id, lead_id, before, after, **fields))
        before = after
    return records


async def publish_scored(settings: Settings, records: Iterable[ScoredEvent]) -> None:
    """Publish as the scorer does: keyed ``unit:lead``."""
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        await publish_batched(
            producer,
            settings.topics.scored,
            [(f"{r.unit_id}:{r.lead_id}".encode(), encode(r)) for r in records],
        )


async def create_trigger(
    gateway: httpx.AsyncClient, tenant: Tenant, url: str, threshold: int, **fields: Any
) -> dict[str, Any]:
    """Create a trigger through the API; the response has its id and signing secret."""
    body = {
        "name": fields.pop("name", f"over {threshold}"),
        "score_threshold": threshold,
        "fire_mode": fields.pop("fire_mode", "always"),
        "webhook_url": url,
        **fields,
    }
    response = await gateway.post("/triggers", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def firings_of(
    gateway: httpx.AsyncClient, tenant: Tenant, trigger_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await gateway.get(
        f"/triggers/{trigger_id}/firings", params={"limit": 100, **params}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    firings: list[dict[str, Any]] = response.json()["firings"]
    return firings


def delivered(firing: dict[str, Any]) -> bool:
    return bool(firing["delivery_status"] == "delivered")


async def wait_firing(
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    trigger_id: str,
    *,
    until: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    """The trigger's one firing, once ``until`` holds for it (a firing as the API lists it)."""
    [firing] = await wait_for(
        lambda: firings_of(gateway, tenant, trigger_id),
        until=lambda fs: len(fs) == 1 and until(fs[0]),
        what=what,
    )
    return firing


async def received(receiver: Receiver, path: str | None = None) -> int:
    """How many webhooks ``receiver`` got (at ``path``): a probe for ``wait_for``."""
    return len(receiver.received if path is None else receiver.at(path))


async def consumed(pool: asyncpg.Pool, settings: Settings) -> int:
    """How many scored records the trigger service has committed."""
    total: int = await pool.fetchval(
        """SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets
           WHERE consumer_group = $1 AND topic = $2""",
        GROUP,
        settings.topics.scored,
    )
    return total


async def wait_consumed(pool: asyncpg.Pool, settings: Settings, count: int) -> None:
    await wait_for(
        lambda: consumed(pool, settings),
        until=lambda n: n >= count,
        what=f"{count} scored records consumed",
    )


@asynccontextmanager
async def running(
    settings: Settings, policy: DeliveryPolicy = TEST_DELIVERY_POLICY
) -> AsyncIterator[None]:
    """The trigger service in process, stopped (gracefully) on leaving the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, policy=policy))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def add_trigger(
    pool: asyncpg.Pool | asyncpg.Connection, unit_id: str, url: str, name: str
) -> str:
    """A trigger written straight into its table (the API's checks are not under test)."""
    trigger_id = f"trg_{unit_id}_{name}"
    await pool.execute(
        """INSERT INTO triggers (trigger_id, unit_id, name, score_threshold, fire_mode,
               webhook_url)
           VALUES ($1, $2, $3, 50, 'always', $4)""",
        trigger_id,
        unit_id,
        name,
        url,
    )
    return trigger_id


async def add_firings(
    pool: asyncpg.Pool, unit_id: str, trigger_id: str, count: int, *, first_due: datetime
) -> list[str]:
    """``count`` pending firings of the trigger, due a millisecond apart from ``first_due``."""
    rows = [
        FiringRow(
            firing_id=firing_id(trigger_id, f"ev{n}"),
            unit_id=unit_id,
            trigger_id=trigger_id,
            lead_id=f"ld_{n}",
            event_id=f"ev{n}",
            event_type="page_view",
            occurred_at=first_due,
            score_threshold=50,
            score_before=0,
            score_after=60,
            once=False,
            fired_at=first_due + timedelta(milliseconds=n),
        )
        for n in range(count)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await store.insert_firings(conn, rows)
    return [r.firing_id for r in rows]
