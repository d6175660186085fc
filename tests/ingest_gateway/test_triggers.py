"""The triggers API: CRUD scoped to the active unit, validation, URL policy, firings."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from leadvibe.settings import Settings
from tests.conftest import Tenant, make_tenant
from tests.gateway import gateway_client
from trigger_service import store
from trigger_service.service import firing_id
from trigger_service.store import FiringRow
from trigger_service.webhooks import signing_secret

pytestmark = pytest.mark.integration

URL = "http://127.0.0.1:9/hook"
BODY = {
    "name": "hot lead",
    "score_threshold": 100,
    "event_type": "demo_request",
    "fire_mode": "once",
    "webhook_url": URL,
}


async def _create(gateway: httpx.AsyncClient, tenant: Tenant, **fields: Any) -> httpx.Response:
    return await gateway.post("/triggers", json={**BODY, **fields}, headers=tenant.headers)


async def test_create_read_list_replace_delete(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await _create(gateway, tenant)
    assert response.status_code == 201, response.text
    created = response.json()
    trigger_id = created["id"]
    assert trigger_id.startswith("trg_")
    assert response.headers["location"] == f"/triggers/{trigger_id}"
    assert created["signing_secret"] == signing_secret(settings.webhook_secret, trigger_id)
    expected = {
        "id": trigger_id,
        "name": "hot lead",
        "score_threshold": 100,
        "event_type": "demo_request",
        "fire_mode": "once",
        "webhook_url": URL,
        "active": True,
    }
    assert {k: created[k] for k in expected} == expected

    fetched = (await gateway.get(f"/triggers/{trigger_id}", headers=tenant.headers)).json()
    assert "signing_secret" not in fetched  # shown once, at creation
    assert {k: fetched[k] for k in expected} == expected

    second = (await _create(gateway, tenant, name="any event", event_type=None)).json()
    listed = (await gateway.get("/triggers", headers=tenant.headers)).json()["triggers"]
    assert [t["id"] for t in listed] == [trigger_id, second["id"]]
    assert listed[1]["event_type"] is None

    replaced = await gateway.put(
        f"/triggers/{trigger_id}",
        json={**BODY, "score_threshold": 120, "fire_mode": "always", "active": False},
        headers=tenant.headers,
    )
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["score_threshold"], body["fire_mode"], body["active"]) == (120, "always", False)
    assert body["updated_at"] >= body["created_at"]

    deleted = await gateway.delete(f"/triggers/{trigger_id}", headers=tenant.headers)
    assert deleted.status_code == 204
    gone = await gateway.get(f"/triggers/{trigger_id}", headers=tenant.headers)
    assert gone.status_code == 404
    assert gone.json()["error"] == "not_found"
    again = await gateway.delete(f"/triggers/{trigger_id}", headers=tenant.headers)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"score_threshold": "100"}, "score_threshold"),
        ({"score_threshold": True}, "score_threshold"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"score_threshold": 2**60}, "score_threshold"),
        ({"event_type": ""}, "event_type"),
        ({"event_type": 3}, "event_type"),
        ({"name": "big\x00spender"}, "name"),
        ({"event_type": "demo\x00"}, "event_type"),
        ({"webhook_url": "https://example.com/\x00hook"}, "webhook_url"),
        ({"fire_mode": "twice"}, "fire_mode"),
        ({"fire_mode": None}, "fire_mode"),
        ({"webhook_url": None}, "webhook_url"),
        ({"active": "yes"}, "active"),
        ({"treshold": 5}, "treshold"),
    ],
)
async def test_invalid_fields_are_named(
    gateway: httpx.AsyncClient, tenant: Tenant, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    response = await gateway.post("/triggers", json=body, headers=tenant.headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "invalid_field"
    assert error["field"] == field
    assert error["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "must be an http or https URL"),
        ("not a url", "must be an http or https URL"),
        ("https://user:secret@example.com/hook", "must not carry credentials"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
async def test_malformed_webhook_urls_are_refused(
    gateway: httpx.AsyncClient, tenant: Tenant, url: str, reason: str
) -> None:
    response = await _create(gateway, tenant, webhook_url=url)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "webhook_url_refused"
    assert reason in response.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
    ],
)
async def test_private_addresses_are_refused_unless_allowed(
    settings: Settings, tenant: Tenant, url: str
) -> None:
    async with gateway_client(replace(settings, allow_private_webhooks=False)) as strict:
        response = await _create(strict, tenant, webhook_url=url)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "webhook_url_refused"
        assert "public addresses only" in response.json()["detail"]
        # A public address is fine.
        public = await _create(strict, tenant, webhook_url="https://93.184.216.34/hook")
        assert public.status_code == 201, public.text
        # And PUT checks the URL again.
        trigger_id = public.json()["id"]
        put = await strict.put(
            f"/triggers/{trigger_id}", json={**BODY, "webhook_url": url}, headers=tenant.headers
        )
        assert put.status_code == 400


async def test_names_are_unique_per_unit(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    assert (await _create(gateway, tenant)).status_code == 201
    duplicate = await _create(gateway, tenant)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "name_taken"
    other = await make_tenant(pool, "globex", "sales")
    assert (await _create(gateway, other)).status_code == 201  # another unit may


async def test_a_unit_sees_and_changes_only_its_own_triggers(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    mine = (await _create(gateway, tenant)).json()["id"]
    other = await make_tenant(pool, "globex", "sales")
    path = f"/triggers/{mine}"
    assert (await gateway.get(path, headers=other.headers)).status_code == 404
    assert (await gateway.put(path, json=BODY, headers=other.headers)).status_code == 404
    assert (await gateway.delete(path, headers=other.headers)).status_code == 404
    assert (await gateway.get(f"{path}/firings", headers=other.headers)).status_code == 404
    assert (await gateway.get("/triggers", headers=other.headers)).json()["triggers"] == []
    assert (await gateway.get(path, headers=tenant.headers)).status_code == 200


async def test_a_token_is_required(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/triggers")).status_code == 401
    assert (await gateway.post("/triggers", json=BODY)).status_code == 401


async def test_no_triggers_without_a_signing_key(settings: Settings, tenant: Tenant) -> None:
    async with gateway_client(replace(settings, webhook_secret="")) as unsigned:
        response = await _create(unsigned, tenant)
    assert response.status_code == 503
    assert "LEADVIBE_WEBHOOK_SECRET" in response.json()["detail"]


async def test_firings_list_newest_first_with_attempts_and_pages(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    trigger_id = (await _create(gateway, tenant, fire_mode="always")).json()["id"]
    start = datetime(2025, 6, 1, tzinfo=UTC)
    rows = [
        FiringRow(
            firing_id=firing_id(trigger_id, f"e{n}"),
            unit_id=tenant.unit_id,
            trigger_id=trigger_id,
            lead_id=f"ld_{n % 2}",
            event_id=f"e{n}",
            event_type="demo_request",
            occurred_at=start,
            score_threshold=100,
            score_before=90,
            score_after=110,
            once=False,
            fired_at=start + timedelta(minutes=n),
        )
        for n in range(3)
    ]
    async with pool.acquire() as conn, conn.transaction():
        assert await store.insert_firings(conn, rows) == {r.firing_id for r in rows}
        assert await store.insert_firings(conn, rows) == set()  # unique per (trigger, event)

    path = f"/triggers/{trigger_id}/firings"
    page = (await gateway.get(path, params={"limit": 2}, headers=tenant.headers)).json()
    assert [f["event_id"] for f in page["firings"]] == ["e2", "e1"]
    assert page["next_page"] == 2
    last = (await gateway.get(path, params={"limit": 2, "page": 2}, headers=tenant.headers)).json()
    assert [f["event_id"] for f in last["firings"]] == ["e0"]
    assert last["next_page"] is None
    first = last["firings"][0]
    assert first["lead_id"] == "ld_0"
    assert first["delivery_status"] == "pending"
    assert first["attempts"] == []
    assert (first["score_before"], first["score_after"]) == (90, 110)

    of_lead = await gateway.get(path, params={"lead_id": "ld_1"}, headers=tenant.headers)
    assert [f["event_id"] for f in of_lead.json()["firings"]] == ["e1"]
    bad = await gateway.get(path, params={"status": "lost"}, headers=tenant.headers)
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_query"
    delivered = await gateway.get(path, params={"status": "delivered"}, headers=tenant.headers)
    assert delivered.json()["firings"] == []


async def test_rotating_the_secret_shows_a_new_one_and_keeps_the_old_for_a_while(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    created = (await _create(gateway, tenant)).json()
    trigger_id = created["id"]
    assert created["previous_secret_expires_at"] is None
    path = f"/triggers/{trigger_id}/secret"

    before = datetime.now(UTC)
    rotated = await gateway.post(f"{path}/rotate", headers=tenant.headers)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["id"] == trigger_id
    assert body["signing_secret"] == signing_secret(settings.webhook_secret, trigger_id, 1)
    assert body["signing_secret"] != created["signing_secret"]
    ends = datetime.fromisoformat(body["previous_secret_expires_at"])
    window = timedelta(seconds=settings.webhook_secret_rollover)
    assert before + window <= ends <= datetime.now(UTC) + window
    fetched = (await gateway.get(f"/triggers/{trigger_id}", headers=tenant.headers)).json()
    assert fetched["previous_secret_expires_at"] == body["previous_secret_expires_at"]
    assert "signing_secret" not in fetched

    again = (await gateway.post(f"{path}/rotate", headers=tenant.headers)).json()
    assert again["signing_secret"] == signing_secret(settings.webhook_secret, trigger_id, 2)

    revoked = await gateway.delete(f"{path}/previous", headers=tenant.headers)
    assert revoked.status_code == 204
    fetched = (await gateway.get(f"/triggers/{trigger_id}", headers=tenant.headers)).json()
    assert fetched["previous_secret_expires_at"] is None

    other = await make_tenant(pool, "globex", "sales")
    assert (await gateway.post(f"{path}/rotate", headers=other.headers)).status_code == 404
    assert (await gateway.delete(f"{path}/previous", headers=other.headers)).status_code == 404
    missing = await gateway.post("/triggers/trg_nope/secret/rotate", headers=tenant.headers)
    assert missing.status_code == 404


async def test_a_unit_has_at_most_the_cap_of_triggers(
    settings: Settings, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    async with gateway_client(replace(settings, max_triggers_per_unit=3)) as capped:
        responses = await asyncio.gather(*(_create(capped, tenant, name=f"t{n}") for n in range(5)))
        assert sorted(r.status_code for r in responses) == [201, 201, 201, 409, 409]
        refused = next(r for r in responses if r.status_code == 409).json()
        assert refused["error"] == "trigger_limit"
        assert "LEADVIBE_MAX_TRIGGERS_PER_UNIT=3" in refused["detail"]
        assert "delete one" in refused["detail"]
        other = await make_tenant(pool, "globex", "sales")
        assert (await _create(capped, other)).status_code == 201  # the cap is per unit
        listed = (await capped.get("/triggers", headers=tenant.headers)).json()["triggers"]
        await capped.delete(f"/triggers/{listed[0]['id']}", headers=tenant.headers)
        assert (await _create(capped, tenant, name="after")).status_code == 201


SPECIAL_URLS = [
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://[fe80::1]/hook",
    "http://[::ffff:169.254.169.254]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of the metadata address
    "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 of it
    "http://[::169.254.169.254]/hook",  # IPv4-compatible
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
]


async def test_link_local_and_special_addresses_are_refused_even_when_private_is_allowed(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    # One test over every URL: a test's fresh database and topics cost seconds each.
    for url in SPECIAL_URLS:
        response = await _create(gateway, tenant, webhook_url=url)  # private allowed here
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"] == "webhook_url_refused"
        assert "is not a public address" in response.json()["detail"]


async def test_a_refusal_does_not_say_what_the_host_resolved_to(
    settings: Settings, tenant: Tenant
) -> None:
    async with gateway_client(replace(settings, allow_private_webhooks=False)) as strict:
        response = await _create(strict, tenant, webhook_url="http://localhost:8080/hook")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail == (
        "webhook_url: host 'localhost' is not a public address; "
        "webhooks go to public addresses only."
    )
