"""Scorers side by side: racing on a new alias or on one event still makes one lead and
counts the event once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from leadvibe.consuming import Consumed
from leadvibe.producing import open_producer, publish_batched
from leadvibe.settings import Settings
from schemas import LeadEvent, encode
from scorer.service import ScoreBatch, run
from tests.conftest import Tenant
from tests.scorer.helpers import event
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        yield producer


async def _publish_keyed_by_identity(settings: Settings, events: list[LeadEvent]) -> None:
    """Publish keyed ``unit:identity`` (the lead id, else the top alias), the old key."""
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        await publish_batched(
            producer,
            settings.topics.events,
            [
                (f"{e.unit_id}:{e.lead_id or f'{e.aliases[0].kind}={e.aliases[0].value}'}"
                 .encode(), encode(e))
                for e in events
            ],
        )  # fmt: skip


async def _waiting_for_a_lock(pool: asyncpg.Pool, pid: int) -> bool:
    wait: str | None = await pool.fetchval(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
    )
    return wait == "Lock"


async def _race(
    settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    first: LeadEvent,
    second: LeadEvent,
) -> ScoreBatch:
    """Scorer A applies ``first`` and holds its transaction open; scorer B applies ``second``
    meanwhile, and must wait for A; then A commits. Returns B's handler."""
    a = ScoreBatch(producer, settings.topics.scored)
    b = ScoreBatch(producer, settings.topics.scored)
    async with pool.acquire() as conn_a, pool.acquire() as conn_b:
        transaction_a = conn_a.transaction()
        await transaction_a.start()
        assert await a(conn_a, [Consumed(first, 0, 0, None, 1_750_000_000_000)]) == []

        async def apply_b() -> None:
            async with conn_b.transaction():
                assert await b(conn_b, [Consumed(second, 1, 0, None, 1_750_000_000_001)]) == []

        task_b = asyncio.create_task(apply_b())
        await wait_for(
            lambda: _waiting_for_a_lock(pool, conn_b.get_server_pid()),
            what="scorer B waiting for scorer A's rows",
        )
        await transaction_a.commit()
        await asyncio.wait_for(task_b, timeout=10)
    return b


async def test_racing_on_a_new_alias_makes_one_lead(
    settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer, tenant: Tenant
) -> None:
    unit = tenant.unit_id
    first = event(unit, "page_view", external_id="crm-1", email="jane@acme.com")
    second = event(unit, "email_open", email="JANE@acme.com", phone="555-0100")
    b = await _race(settings, pool, producer, first, second)

    assert b.races_lost == 1
    leads = await pool.fetch("SELECT lead_id, event_count FROM leads")
    assert [r["event_count"] for r in leads] == [2]
    owners = await pool.fetch("SELECT kind, lead_id FROM aliases ORDER BY kind")
    assert [(r["kind"], r["lead_id"]) for r in owners] == [
        ("email", leads[0]["lead_id"]),
        ("external_id", leads[0]["lead_id"]),
        ("phone", leads[0]["lead_id"]),
    ]
    assert await pool.fetchval("SELECT count(*) FROM alias_conflicts") == 0


async def test_racing_on_one_event_applies_it_once(
    settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer, tenant: Tenant
) -> None:
    once = event(tenant.unit_id, "page_view", lead_id="ld_1")
    b = await _race(settings, pool, producer, once, once)

    assert b.check_applied_first  # it found the event applied, and will check first next time
    assert await pool.fetchval("SELECT count(*) FROM events") == 1
    assert await pool.fetchval("SELECT event_count FROM leads WHERE lead_id = 'ld_1'") == 1


async def test_two_scorers_on_one_topic_share_it_and_agree_on_leads(
    settings: Settings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Records keyed the way the gateway keyed them before the unit key (``unit:identity``,
    still in a topic written then): each person's events all name the same new e-mail but
    are keyed by different aliases, so they land on different partitions and the two
    scorers claim the e-mail at once, each holding its own state of the unit. Whatever the
    order, each person ends as one lead owning all five aliases, counted once per event."""
    unit, people = tenant.unit_id, 300
    events = []
    for n in range(people):
        email = f"person{n}@acme.com"
        events += [
            event(unit, "page_view", external_id=f"crm-{n}", email=email),
            event(unit, "email_open", email=email.upper(), cookie=f"c-{n}"),
            event(unit, "form_submit", external_id=f"erp-{n}", email=email, phone=f"555{n}"),
        ]
    await pool.execute(
        "INSERT INTO rulesets (ruleset_id, unit_id, name) VALUES ('rs_1', $1, 'rs_1')", unit
    )
    await pool.execute(
        """INSERT INTO rules (ruleset_id, event_type, points, position)
           VALUES ('rs_1', 'page_view', 1, 0), ('rs_1', 'email_open', 2, 1),
                  ('rs_1', 'form_submit', 4, 2)"""
    )
    stops = [asyncio.Event(), asyncio.Event()]
    scorers = [asyncio.create_task(run(settings, stop=stop, max_records=50)) for stop in stops]
    try:
        await _publish_keyed_by_identity(settings, events)
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) FROM events"),
            until=lambda n: n == len(events),
            timeout=60,
            what="every event applied",
        )
        assert not any(task.done() for task in scorers)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*scorers)

    assert await pool.fetchval("SELECT count(*) FROM leads") == people
    assert await pool.fetchval("SELECT count(*) FROM alias_conflicts") == 0
    per_lead = await pool.fetch(
        """SELECT l.event_count, count(a.*) AS aliases
           FROM leads AS l JOIN aliases AS a USING (unit_id, lead_id)
           GROUP BY l.unit_id, l.lead_id, l.event_count"""
    )
    assert {(r["event_count"], r["aliases"]) for r in per_lead} == {(3, 5)}
    scores = await pool.fetch("SELECT score, event_count FROM leads")
    assert {(r["score"], r["event_count"]) for r in scores} == {(7, 3)}  # no update lost
    offsets = await pool.fetch(
        "SELECT next_offset FROM consumer_offsets WHERE consumer_group = 'leadvibe-scorer'"
    )
    assert sum(r["next_offset"] for r in offsets) == len(events)
