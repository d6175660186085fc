"""GET and POST /org-units: a token's organisation's units, by name."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.conftest import Tenant, make_tenant

pytestmark = pytest.mark.integration


async def test_units_are_listed_with_the_active_one_and_created_by_name(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    await make_tenant(pool, "globex", "ops")  # another organisation's unit: never listed

    made = await gateway.post("/org-units", json={"name": " sales "}, headers=tenant.headers)
    assert made.status_code == 201, made.text
    sales = made.json()
    assert sales["unit_id"].startswith("ou_")
    assert (sales["name"], sales["active"]) == ("sales", False)

    listed = await gateway.get("/org-units", headers=tenant.headers)
    assert listed.status_code == 200
    body = listed.json()
    assert body["active_unit_id"] == tenant.unit_id
    assert [(u["name"], u["unit_id"], u["active"]) for u in body["org_units"]] == [
        ("marketing", tenant.unit_id, True),
        ("sales", sales["unit_id"], False),
    ]

    switched = await gateway.post(
        "/org-units/active", json={"unit_id": sales["unit_id"]}, headers=tenant.headers
    )
    assert switched.status_code == 200
    now = (await gateway.get("/org-units", headers=tenant.headers)).json()
    assert now["active_unit_id"] == sales["unit_id"]
    assert [u["active"] for u in now["org_units"]] == [False, True]


async def test_a_name_the_organisation_has_is_409_and_a_bad_one_400(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    taken = await gateway.post("/org-units", json={"name": "marketing"}, headers=tenant.headers)
    assert taken.status_code == 409
    assert taken.json() == {
        "error": "name_taken",
        "detail": "Your organisation has a unit named 'marketing' already; "
        "GET /org-units lists its id.",
    }
    for body, field in (({"name": ""}, "name"), ({"name": "x", "colour": "red"}, "colour")):
        refused = await gateway.post("/org-units", json=body, headers=tenant.headers)
        assert refused.status_code == 400
        assert (refused.json()["error"], refused.json()["field"]) == ("invalid_field", field)
    assert (await gateway.get("/org-units")).status_code == 401
