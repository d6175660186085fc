"""The scorer end to end: events on the real topic, projections read through the read API."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import asyncpg
import httpx
import msgspec
import pytest

from leadvibe.producing import open_producer, publish_all
from leadvibe.settings import Settings
from schemas import Alias, DeadLetter, LeadEvent, ScoredEvent, decode, encode
from scorer.store import bump_generations
from tests.conftest import Tenant, make_tenant
from tests.scorer.helpers import (
    create_ruleset,
    event,
    get_json,
    lead_when,
    publish,
    read_topic,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("scorer")]


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 6, day, hour, tzinfo=UTC)


async def _count(pool: asyncpg.Pool, table: str) -> int:
    count: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def test_events_by_lead_id_create_those_leads_and_score_them(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    ruleset = await create_ruleset(
        gateway, tenant, {"page_view": 1, "email_open": 5, "demo_request": 50}
    )
    unit = tenant.unit_id
    await publish(
        settings,
        [
            event(unit, "page_view", lead_id="ld_abc123", timestamp=_at(15, 10)),
            event(unit, "email_open", lead_id="ld_abc123", timestamp=_at(16, 14)),
            event(unit, "demo_request", lead_id="ld_def456", timestamp=_at(20, 9)),
        ],
    )

    abc = await lead_when(gateway, tenant, "/leads/ld_abc123", event_count=2)
    assert abc["score"] == 6
    assert abc["engagement_scores"] == {ruleset: 6}
    assert abc["aliases"] == []
    assert abc["first_event_at"] == "2025-06-15T10:00:00Z"
    assert abc["last_event_at"] == "2025-06-16T14:00:00Z"
    await lead_when(gateway, tenant, "/leads/ld_def456", event_count=1)

    leads = await get_json(gateway, tenant, "/leads")
    assert [(lead["lead_id"], lead["score"]) for lead in leads["leads"]] == [
        ("ld_def456", 50),
        ("ld_abc123", 6),
    ]
    events = await get_json(gateway, tenant, "/events", lead_id="ld_abc123")
    assert [(e["event_type"], e["points"]) for e in events["events"]] == [
        ("email_open", 5),
        ("page_view", 1),
    ]


async def test_alias_only_rows_create_a_lead_then_reuse_it(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create_ruleset(gateway, tenant, {"webinar_attend": 20, "page_view": 1})
    unit = tenant.unit_id
    await publish(settings, [event(unit, "webinar_attend", email="Jane@Acme.com", cookie="c-1")])
    jane = await lead_when(gateway, tenant, "/leads?email=jane@acme.com", event_count=1)
    assert jane["lead_id"].startswith("ld_")
    assert jane["aliases"] == [
        {"kind": "email", "value": "jane@acme.com"},
        {"kind": "cookie", "value": "c-1"},
    ]

    # Known cookie, new phone: the same lead, which now owns the phone too.
    await publish(settings, [event(unit, "page_view", cookie="c-1", phone="+1 415 555 0100")])
    jane = await lead_when(gateway, tenant, f"/leads/{jane['lead_id']}", event_count=2)
    assert jane["score"] == 21
    by_phone = await get_json(gateway, tenant, "/leads", phone="+1 (415) 555-0100")
    assert by_phone["lead_id"] == jane["lead_id"]
    aliases = await get_json(gateway, tenant, f"/lead/{jane['lead_id']}/aliases")
    assert [(a["kind"], a["value"]) for a in aliases["aliases"]] == [
        ("email", "jane@acme.com"),
        ("phone", "+14155550100"),
        ("cookie", "c-1"),
    ]
    leads = await get_json(gateway, tenant, "/leads")
    assert len(leads["leads"]) == 1


async def test_an_alias_of_another_lead_is_not_moved_but_recorded_as_a_conflict(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    unit = tenant.unit_id
    await publish(settings, [event(unit, "page_view", lead_id="ld_a", email="shared@acme.com")])
    await lead_when(gateway, tenant, "/leads/ld_a", event_count=1)
    clash = event(unit, "page_view", lead_id="ld_b", email="SHARED@acme.com", cookie="c-b")
    await publish(settings, [clash])
    b = await lead_when(gateway, tenant, "/leads/ld_b", event_count=1)

    assert b["aliases"] == [{"kind": "cookie", "value": "c-b"}]
    owner = await get_json(gateway, tenant, "/leads", email="shared@acme.com")
    assert owner["lead_id"] == "ld_a"
    conflicts = await get_json(gateway, tenant, "/alias-conflicts", lead_id="ld_b")
    assert [
        (c["event_id"], c["alias"], c["owner_lead_id"], c["event_lead_id"])
        for c in conflicts["conflicts"]
    ] == [(clash.event_id, {"kind": "email", "value": "shared@acme.com"}, "ld_a", "ld_b")]
    assert await _count(pool, "leads") == 2


async def test_an_event_published_twice_counts_once(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    await create_ruleset(gateway, tenant, {"page_view": 3})
    once = event(tenant.unit_id, "page_view", lead_id="ld_x")
    await publish(settings, [once, once])  # twice in one batch
    await lead_when(gateway, tenant, "/leads/ld_x", event_count=1)
    later = event(tenant.unit_id, "page_view", lead_id="ld_x")
    await publish(settings, [once, later])  # and again in a later batch
    lead = await lead_when(gateway, tenant, "/leads/ld_x", event_count=2)
    assert lead["score"] == 6
    scored = await read_topic(settings, settings.topics.scored, ScoredEvent, 2)
    assert sorted(s.event_id for s in scored) == sorted([once.event_id, later.event_id])


async def test_each_applied_event_is_published_scored_with_the_identity_decisions(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create_ruleset(gateway, tenant, {"page_view": 2, "unsubscribe": -5})
    unit = tenant.unit_id
    first = event(unit, "page_view", email="bob@example.com", source="import")
    await publish(settings, [first])
    [created] = await read_topic(settings, settings.topics.scored, ScoredEvent, 1)
    second = event(unit, "unsubscribe", lead_id=created.lead_id, cookie="c-9")
    await publish(settings, [second])
    [_, attached] = await read_topic(settings, settings.topics.scored, ScoredEvent, 2)

    assert created.event_id == first.event_id
    assert (created.points, created.score_before, created.score_after) == (2, 0, 2)
    assert created.lead_created
    assert created.aliases_attached == (Alias("email", "bob@example.com"),)
    assert (created.source, created.skip_triggers, created.replay) == ("import", False, False)
    assert attached.lead_id == created.lead_id
    assert (attached.points, attached.score_before, attached.score_after) == (-5, 2, -3)
    assert not attached.lead_created
    assert attached.aliases_attached == (Alias("cookie", "c-9"),)


async def test_unknown_unit_and_missing_identity_go_to_the_dead_letters(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    await publish(
        settings,
        [
            event("ou_gone", "page_view", lead_id="ld_1"),
            event(tenant.unit_id, "page_view", phone="(no digits)"),
            event(tenant.unit_id, "page_view", lead_id="ld_ok"),
        ],
    )
    await lead_when(gateway, tenant, "/leads/ld_ok", event_count=1)
    letters = await read_topic(settings, settings.topics.deadletter, DeadLetter, 2)
    assert sorted(letter.reason for letter in letters) == [
        "no identity: the event has neither a lead_id nor a usable alias",
        "unit 'ou_gone' does not exist",
    ]


async def test_rule_changes_apply_to_the_next_events_without_a_restart(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    ruleset = await create_ruleset(gateway, tenant, {"page_view": 1}, name="web")
    unit = tenant.unit_id
    await publish(settings, [event(unit, "page_view", lead_id="ld_r")])
    await lead_when(gateway, tenant, "/leads/ld_r", event_count=1)

    response = await gateway.put(
        f"/rulesets/{ruleset}",
        json={"name": "web", "rules": [{"event_type": "page_view", "points": 10}]},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    await publish(settings, [event(unit, "page_view", lead_id="ld_r")])
    lead = await lead_when(gateway, tenant, "/leads/ld_r", event_count=2)
    assert lead["score"] == 11


async def test_only_active_rulesets_valid_at_the_events_time_count(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    june = await create_ruleset(
        gateway,
        tenant,
        {"page_view": 10},
        starts_at="2025-06-01T00:00:00Z",
        ends_at="2025-07-01T00:00:00Z",
    )
    always = await create_ruleset(gateway, tenant, {"page_view": 1})
    await create_ruleset(gateway, tenant, {"page_view": 100}, active=False)
    unit = tenant.unit_id
    await publish(
        settings,
        [
            event(unit, "page_view", lead_id="ld_t", timestamp=_at(30, 23)),
            event(unit, "page_view", lead_id="ld_t", timestamp=datetime(2025, 7, 1, tzinfo=UTC)),
            event(unit, "webinar_attend", lead_id="ld_t"),  # no rule: 0 points, still applied
        ],
    )
    lead = await lead_when(gateway, tenant, "/leads/ld_t", event_count=3)
    assert lead["score"] == 12
    assert lead["engagement_scores"] == {june: 10, always: 2}


async def test_units_do_not_share_leads_or_aliases(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    other = await make_tenant(pool, "globex", "sales")
    await publish(
        settings,
        [
            event(tenant.unit_id, "page_view", lead_id="ld_same", email="a@b.c"),
            event(other.unit_id, "page_view", lead_id="ld_same", email="a@b.c"),
            event(other.unit_id, "page_view", email="only@globex.com"),
        ],
    )
    await lead_when(gateway, tenant, "/leads/ld_same", event_count=1)
    await lead_when(gateway, other, "/leads/ld_same", event_count=1)
    await wait_for(lambda: _count(pool, "events"), until=lambda n: n == 3, what="3 events")
    response = await gateway.get(
        "/leads", params={"email": "only@globex.com"}, headers=tenant.headers
    )
    assert response.status_code == 404
    mine = await get_json(gateway, tenant, "/leads")
    assert [lead["lead_id"] for lead in mine["leads"]] == ["ld_same"]
    assert await _count(pool, "alias_conflicts") == 0


async def test_an_event_postgres_refuses_goes_alone_to_the_dead_letters(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    poison = msgspec.structs.replace(
        event(tenant.unit_id, "page_view", lead_id="ld_p"), metadata={"note": "nul \x00 here"}
    )
    await publish(
        settings,
        [
            event(tenant.unit_id, "page_view", lead_id="ld_p"),
            poison,
            event(tenant.unit_id, "page_view", lead_id="ld_p"),
        ],
    )
    await lead_when(gateway, tenant, "/leads/ld_p", event_count=2)
    [letter] = await read_topic(settings, settings.topics.deadletter, DeadLetter, 1)
    assert letter.reason.startswith("handler failed:")
    assert decode(letter.value, LeadEvent) == poison


async def test_a_score_past_int64_dead_letters_its_event_and_the_rest_is_scored(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The lead's new score is out of a bigint's range: that event's fault, so it alone
    goes to the dead letters; the batch is neither lost nor retried forever."""
    await create_ruleset(gateway, tenant, {"page_view": 2_000_000_000})
    unit = tenant.unit_id
    await publish(settings, [event(unit, "page_view", lead_id="ld_big")])
    await lead_when(gateway, tenant, "/leads/ld_big", event_count=1)
    async with pool.acquire() as conn, conn.transaction():
        # Written behind the scorer, which holds the lead in memory: as a replay does, bump
        # the unit's generation so that it reads the lead again.
        await conn.execute("UPDATE leads SET score = 9223372036000000000 WHERE lead_id = 'ld_big'")
        await bump_generations(conn, [unit])
    overflowing = event(unit, "page_view", lead_id="ld_big")
    await publish(settings, [overflowing, event(unit, "page_view", lead_id="ld_small")])

    small = await lead_when(gateway, tenant, "/leads/ld_small", event_count=1)
    assert small["score"] == 2_000_000_000
    [letter] = await read_topic(settings, settings.topics.deadletter, DeadLetter, 1)
    # The scorer adds in Python; the driver refuses to send a bigint out of range.
    assert letter.reason.startswith("handler failed: DataError"), letter.reason
    assert "out of int64 range" in letter.reason
    assert decode(letter.value, LeadEvent) == overflowing
    big = await get_json(gateway, tenant, "/leads/ld_big")
    assert (big["score"], big["event_count"]) == (9223372036000000000, 1)


async def test_a_megabyte_event_without_identity_is_dead_lettered_and_its_partition_moves_on(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Its dead letter whole would be over Kafka's 1 MiB: kept truncated, with its size and
    digest, instead of the batch failing to publish it and being retried forever."""
    unit = tenant.unit_id
    huge = event(unit, "page_view", phone="n/a " * 250_000)  # normalises to no digits
    value = encode(huge)
    assert len(value) > 1_000_000
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        after = event(unit, "page_view", lead_id="ld_after")
        await publish_all(producer, settings.topics.events, [(b"k", value), (b"k", encode(after))])

    await lead_when(gateway, tenant, "/leads/ld_after", event_count=1)  # same partition, after
    [letter] = await read_topic(settings, settings.topics.deadletter, DeadLetter, 1)
    assert letter.reason == "no identity: the event has neither a lead_id nor a usable alias"
    assert letter.value_truncated
    assert letter.value is not None
    assert value.startswith(letter.value)
    assert letter.value_size == len(value)
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
