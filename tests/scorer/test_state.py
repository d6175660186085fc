"""The scorer's state in memory: what it holds, when it drops it, and that a scorer holding
it still scores right after its projections were rewritten behind it."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from leadvibe.settings import Settings
from scorer.replay import rescore
from scorer.scoring import Ruleset
from scorer.state import Lead, ScorerState, UnitVersion
from tests.conftest import Tenant
from tests.scorer.helpers import create_ruleset, event, get_json, lead_when, publish

JUNE = datetime(2025, 6, 15, tzinfo=UTC)
V1 = UnitVersion(generation=0, rules="1:100")


def _held(units: dict[str, UnitVersion]) -> ScorerState:
    state = ScorerState()
    state.check(units)
    state.set_rulesets(units, [Ruleset(f"rs_{u}", u, {"page_view": 1}) for u in units])
    for unit_id in units:
        state.leads[(unit_id, "ld_1")] = Lead(5, 1, stored=True)
        state.owners[(unit_id, "email", "a@b.c")] = "ld_1"
    return state


def test_rulesets_are_read_once_until_they_change() -> None:
    state = _held({"ou_1": V1})
    assert state.check({"ou_1": V1}) == []
    assert state.book.score("ou_1", "page_view", JUNE).total == 1
    assert state.check({"ou_1": UnitVersion(0, "2:300")}) == ["ou_1"]
    state.set_rulesets(["ou_1"], [])  # the unit's only ruleset was deleted
    assert state.book.score("ou_1", "page_view", JUNE).total == 0
    assert state.leads  # a rule change keeps the leads: points given stay


def test_a_new_generation_drops_that_units_leads_and_owners_only() -> None:
    state = _held({"ou_1": V1, "ou_2": V1})
    assert state.check({"ou_1": UnitVersion(1, V1.rules), "ou_2": V1}) == ["ou_1"]
    assert set(state.leads) == {("ou_2", "ld_1")}
    assert set(state.owners) == {("ou_2", "email", "a@b.c")}


def test_past_its_capacity_the_oldest_loaded_half_goes() -> None:
    state = ScorerState(capacity=10)
    for n in range(12):
        state.leads[("ou_1", f"ld_{n}")] = Lead()
    state.trim()
    assert [key[1] for key in state.leads] == [f"ld_{n}" for n in range(6, 12)]
    state.trim()  # within capacity: nothing goes
    assert len(state) == 6


def test_clear_forgets_everything() -> None:
    state = _held({"ou_1": V1})
    state.clear()
    assert len(state) == 0
    assert state.check({"ou_1": V1}) == ["ou_1"]


@pytest.mark.integration
@pytest.mark.usefixtures("scorer")
async def test_a_scorer_holding_a_lead_scores_from_what_a_rescore_wrote(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The scorer holds ld_a at 2 points; a rescore makes it 20 behind its back (and bumps
    the unit's generation); the next event must start from 20, not from 2."""
    unit = tenant.unit_id
    ruleset = await create_ruleset(gateway, tenant, {"page_view": 1}, name="engagement")
    await publish(settings, [event(unit, "page_view", lead_id="ld_a") for _ in range(2)])
    assert (await lead_when(gateway, tenant, "/leads/ld_a", event_count=2))["score"] == 2
    response = await gateway.put(
        f"/rulesets/{ruleset}",
        json={"name": "engagement", "rules": [{"event_type": "page_view", "points": 10}]},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text

    await rescore(settings, unit)
    assert (await get_json(gateway, tenant, "/leads/ld_a"))["score"] == 20
    await publish(settings, [event(unit, "page_view", lead_id="ld_a")])

    lead = await lead_when(gateway, tenant, "/leads/ld_a", event_count=3)
    assert (lead["score"], lead["engagement_scores"]) == (30, {ruleset: 30})
    latest = await pool.fetchval(
        "SELECT score_after FROM events WHERE lead_id = 'ld_a' ORDER BY scored_at DESC LIMIT 1"
    )
    assert latest == 30
    generation = await pool.fetchval(
        "SELECT generation FROM projection_generations WHERE unit_id = $1", unit
    )
    assert generation == 1
