"""The read API's edges: unit scoping, paging limits, alias look-ups. (What it shows once
events are scored is tested with the scorer, tests/scorer.)"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.conftest import Tenant, make_tenant

pytestmark = pytest.mark.integration


async def _lead(pool: asyncpg.Pool, unit_id: str, lead_id: str, score: int) -> None:
    await pool.execute(
        "INSERT INTO leads (unit_id, lead_id, score, event_count) VALUES ($1, $2, $3, 1)",
        unit_id,
        lead_id,
        score,
    )


async def test_another_units_lead_is_not_found(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    other = await make_tenant(pool, "globex", "sales")
    await _lead(pool, other.unit_id, "ld_theirs", 5)
    await pool.execute(
        "INSERT INTO aliases (unit_id, kind, value, lead_id, event_id)"
        " VALUES ($1, 'email', 'a@b.c', 'ld_theirs', 'e1')",
        other.unit_id,
    )
    for path in ("/leads/ld_theirs", "/lead/ld_theirs/aliases", "/leads?email=a@b.c"):
        response = await gateway.get(path, headers=tenant.headers)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert (await gateway.get("/leads/ld_theirs", headers=other.headers)).status_code == 200
    assert (await gateway.get("/leads", headers=tenant.headers)).json()["leads"] == []


async def test_lists_page_by_score_with_a_limit_of_100(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    for n in range(5):
        await _lead(pool, tenant.unit_id, f"ld_{n}", n * 10)
    first = (await gateway.get("/leads?limit=2", headers=tenant.headers)).json()
    assert [lead["lead_id"] for lead in first["leads"]] == ["ld_4", "ld_3"]
    assert (first["page"], first["limit"], first["next_page"]) == (1, 2, 2)
    last = (await gateway.get("/leads?limit=2&page=3", headers=tenant.headers)).json()
    assert [lead["lead_id"] for lead in last["leads"]] == ["ld_0"]
    assert last["next_page"] is None

    for query in ("limit=101", "limit=0", "page=0", "limit=ten"):
        for path in ("/leads", "/events", "/alias-conflicts"):
            response = await gateway.get(f"{path}?{query}", headers=tenant.headers)
            assert response.status_code == 400, (path, query)
            assert response.json()["error"] == "invalid_query"


async def test_alias_lookup_takes_one_alias(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    both = await gateway.get("/leads?email=a@b.c&phone=1", headers=tenant.headers)
    assert both.status_code == 400
    empty = await gateway.get("/leads?phone=abc", headers=tenant.headers)
    assert empty.status_code == 400
    assert (await gateway.get("/leads", headers={})).status_code == 401


async def _event(pool: asyncpg.Pool, unit_id: str, event_id: str, lead_id: str, day: int) -> None:
    await pool.execute(
        """INSERT INTO events (unit_id, event_id, lead_id, event_type, occurred_at, source,
                               skip_triggers, points, score_after)
           VALUES ($1, $2, $3, 'page_view', make_date(2025, 6, $4), 'api', false, 1, 1)""",
        unit_id,
        event_id,
        lead_id,
        day,
    )


async def test_events_list_newest_received_first_and_a_leads_by_their_time(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The unit's events come in the order of their ids (the time the gateway accepted
    them), served by the primary key; a lead's by the events' own time (events_by_lead).
    Here an import of old events was received after a live one."""
    await _event(pool, tenant.unit_id, "ev_01a", "ld_a", 20)  # live, received first
    await _event(pool, tenant.unit_id, "ev_01b", "ld_a", 1)  # imported later, old events
    await _event(pool, tenant.unit_id, "ev_01c", "ld_b", 2)
    unit = (await gateway.get("/events", headers=tenant.headers)).json()["events"]
    assert [e["event_id"] for e in unit] == ["ev_01c", "ev_01b", "ev_01a"]
    lead = (await gateway.get("/events?lead_id=ld_a", headers=tenant.headers)).json()["events"]
    assert [e["event_id"] for e in lead] == ["ev_01a", "ev_01b"]
    plan = await pool.fetch(
        "EXPLAIN SELECT event_id FROM events WHERE unit_id = $1 ORDER BY event_id DESC LIMIT 51",
        tenant.unit_id,
    )
    steps = "\n".join(r[0] for r in plan)
    assert "Index Only Scan Backward using events_pkey" in steps
    assert "Sort" not in steps
