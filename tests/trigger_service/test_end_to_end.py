"""Through the whole pipeline: gateway, scorer, trigger service, a receiver on loopback.

What ``skip_triggers`` exists for: a backfill that sets scores silently, and live events
that fire from the scores it left.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from leadvibe.settings import Settings
from tests.conftest import Tenant, make_tenant
from tests.scorer.helpers import create_ruleset, get_json, import_csv, wait_applied
from tests.trigger_service.helpers import (
    create_trigger,
    delivered,
    firings_of,
    received,
    wait_consumed,
    wait_firing,
)
from tests.trigger_service.receiver import Receiver
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("scorer", "trigger_service")]

RULES = {"page_view": 10, "demo_request": 50, "unsubscribe": -40}

# ld_a: 10, 60 (crosses 50), 20 (down through negative points), 70 (crosses 50 again);
# ld_b: 50 (reaches 50 exactly: a crossing); ld_c: 10 (crosses only the page_view trigger).
ROWS = """lead_id,event_type,timestamp
ld_a,page_view,2025-06-01T10:00:00Z
ld_a,demo_request,2025-06-02T10:00:00Z
ld_b,demo_request,2025-06-02T11:00:00Z
ld_a,unsubscribe,2025-06-03T10:00:00Z
ld_a,demo_request,2025-06-04T10:00:00Z
ld_c,page_view,2025-06-05T10:00:00Z
"""
ROW_COUNT = 6


async def _import(
    gateway: httpx.AsyncClient, tenant: Tenant, csv: str, *, skip_triggers: bool
) -> None:
    accepted = await import_csv(gateway, tenant, csv, skip_triggers=skip_triggers)
    await wait_applied(gateway, tenant, accepted["import_id"])


async def _set_up(
    gateway: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, prefix: str
) -> dict[str, dict[str, Any]]:
    await create_ruleset(gateway, tenant, RULES)
    return {
        "always": await create_trigger(
            gateway, tenant, receiver.url(f"/{prefix}/always"), 50, name="always"
        ),
        "once": await create_trigger(
            gateway, tenant, receiver.url(f"/{prefix}/once"), 50, fire_mode="once", name="once"
        ),
        "page_view": await create_trigger(
            gateway,
            tenant,
            receiver.url(f"/{prefix}/page_view"),
            10,
            event_type="page_view",
            name="page views",
        ),
    }


async def _fired(
    gateway: httpx.AsyncClient, tenant: Tenant, triggers: dict[str, dict[str, Any]]
) -> set[tuple[str, str, str, int, int]]:
    return {
        (name, f["lead_id"], f["event_type"], f["score_before"], f["score_after"])
        for name, trigger in triggers.items()
        for f in await firings_of(gateway, tenant, trigger["id"])
    }


async def test_an_import_with_skip_triggers_fires_nothing_and_without_it_fires_exactly(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    # The same rows and the same triggers in two units; only the flag differs.
    silent = tenant
    loud = await make_tenant(pool, "acme", "sales")
    silent_triggers = await _set_up(gateway, silent, receiver, "silent")
    loud_triggers = await _set_up(gateway, loud, receiver, "loud")

    await _import(gateway, silent, ROWS, skip_triggers=True)
    await wait_consumed(pool, settings, ROW_COUNT)  # the trigger service has seen them all
    assert await _fired(gateway, silent, silent_triggers) == set()
    lead = await get_json(gateway, silent, "/leads/ld_a")
    assert lead["score"] == 70  # scored all the same

    await _import(gateway, loud, ROWS, skip_triggers=False)
    expected = {
        ("always", "ld_a", "demo_request", 10, 60),
        ("always", "ld_b", "demo_request", 0, 50),
        ("always", "ld_a", "demo_request", 20, 70),
        ("once", "ld_a", "demo_request", 10, 60),
        ("once", "ld_b", "demo_request", 0, 50),
        ("page_view", "ld_a", "page_view", 0, 10),
        ("page_view", "ld_c", "page_view", 0, 10),
    }
    await wait_for(
        lambda: received(receiver),
        until=lambda n: n >= len(expected),
        what=f"{len(expected)} webhooks",
    )
    await wait_consumed(pool, settings, 2 * ROW_COUNT)
    assert await _fired(gateway, loud, loud_triggers) == expected
    assert await _fired(gateway, silent, silent_triggers) == set()
    assert all(r.path.startswith("/loud/") for r in receiver.received)
    assert len(receiver.received) == len(expected)
    for name, trigger in loud_triggers.items():
        for got in receiver.at(f"/loud/{name}"):
            assert got.signed_by(trigger["signing_secret"])
            assert got.json["trigger"]["id"] == trigger["id"]


async def test_a_live_event_crossing_after_a_silent_backfill_sends_one_signed_webhook(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    await create_ruleset(gateway, tenant, RULES)
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50, fire_mode="once")
    # The backfill brings ld_live to 40, silently.
    backfill = "lead_id,event_type\n" + "ld_live,page_view\n" * 4
    await _import(gateway, tenant, backfill, skip_triggers=True)

    response = await gateway.post(
        "/ingest",
        json={"lead_id": "ld_live", "event_type": "demo_request"},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text

    await wait_for(lambda: received(receiver), until=lambda n: n >= 1, what="the webhook")
    await wait_consumed(pool, settings, 5)
    [got] = receiver.received
    assert got.signed_by(trigger["signing_secret"])
    body = got.json
    assert body["lead"] == {"id": "ld_live"}
    assert body["event"]["type"] == "demo_request"
    assert (body["score_before"], body["score_after"]) == (40, 90)
    firing = await wait_firing(
        gateway, tenant, trigger["id"], until=delivered, what="the firing delivered"
    )
    assert firing["id"] == got.firing_id == body["id"]
