"""Rulesets over the API: validation names the field, everything is scoped to the unit."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from ingest_gateway.errors import BadRequest
from ingest_gateway.rulesets import parse_ruleset
from tests.conftest import Tenant, make_tenant

BODY: dict[str, Any] = {
    "name": "Web engagement",
    "active": True,
    "starts_at": "2025-06-01T00:00:00Z",
    "ends_at": "2025-09-01T00:00:00+02:00",
    "rules": [
        {"event_type": "page_view", "points": 1},
        {"event_type": "unsubscribe", "points": -20},
    ],
}


def _field_of(body: Any) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_ruleset(body)
    assert caught.value.code in ("invalid_field", "invalid_body")
    return str(caught.value.extra.get("field", ""))


def test_a_valid_ruleset_is_parsed_with_defaults() -> None:
    spec = parse_ruleset({"name": " Web ", "rules": [{"event_type": "demo", "points": 0}]})
    assert (spec.name, spec.active, spec.starts_at, spec.ends_at) == ("Web", True, None, None)
    assert spec.rules == (("demo", 0),)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
        ({"name": "Web\x00"}, "name"),
        ({"rules": [{"event_type": "page\x00view", "points": 1}]}, "rules[0].event_type"),
        ({"active": "yes"}, "active"),
        ({"starts_at": "yesterday"}, "starts_at"),
        ({"starts_at": "2025-06-01T00:00:00"}, "starts_at"),  # no offset
        ({"ends_at": "2025-05-01T00:00:00Z"}, "ends_at"),  # before starts_at
        ({"rules": None}, "rules"),
        ({"rules": ["page_view"]}, "rules[0]"),
        ({"rules": [{"event_type": " ", "points": 1}]}, "rules[0].event_type"),
        ({"rules": [{"event_type": "a", "points": 1.5}]}, "rules[0].points"),
        ({"rules": [{"event_type": "a", "points": True}]}, "rules[0].points"),
        ({"rules": [{"event_type": "a", "points": 2**40}]}, "rules[0].points"),
        ({"rules": [{"event_type": "a", "points": 1}, {"event_type": "a", "points": 2}]},
         "rules[1].event_type"),
        ({"rules": [{"event_type": "a", "points": 1, "weight": 2}]}, "rules[0].weight"),
        ({"start_at": "2025-06-01T00:00:00Z"}, "start_at"),
    ],
)  # fmt: skip
def test_each_invalid_field_is_named(change: dict[str, Any], field: str) -> None:
    assert _field_of({**BODY, **change}) == field


def test_a_body_that_is_not_an_object_is_refused() -> None:
    assert _field_of([BODY]) == ""


@pytest.mark.integration
async def test_create_read_replace_delete(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await gateway.post("/rulesets", json=BODY, headers=tenant.headers)
    assert created.status_code == 201, created.text
    ruleset = created.json()
    assert ruleset["id"].startswith("rs_")
    assert created.headers["location"] == f"/rulesets/{ruleset['id']}"
    assert ruleset["rules"] == BODY["rules"]
    assert (ruleset["starts_at"], ruleset["ends_at"]) == (
        "2025-06-01T00:00:00Z",
        "2025-08-31T22:00:00Z",
    )
    path = f"/rulesets/{ruleset['id']}"
    assert (await gateway.get(path, headers=tenant.headers)).json() == ruleset

    replaced = await gateway.put(
        path,
        json={"name": "Web", "active": False, "rules": [{"event_type": "demo", "points": 50}]},
        headers=tenant.headers,
    )
    assert replaced.status_code == 200, replaced.text
    assert {k: replaced.json()[k] for k in ("name", "active", "starts_at", "rules")} == {
        "name": "Web",
        "active": False,
        "starts_at": None,
        "rules": [{"event_type": "demo", "points": 50}],
    }
    listed = await gateway.get("/rulesets", headers=tenant.headers)
    assert [r["name"] for r in listed.json()["rulesets"]] == ["Web"]

    assert (await gateway.delete(path, headers=tenant.headers)).status_code == 204
    missing = await gateway.get(path, headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert (await gateway.delete(path, headers=tenant.headers)).status_code == 404


@pytest.mark.integration
async def test_errors_are_json_naming_the_field(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    bad = {**BODY, "rules": [{"event_type": "a", "points": "ten"}]}
    response = await gateway.post("/rulesets", json=bad, headers=tenant.headers)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_field",
        "detail": "rules[0].points: required, an integer (negative allowed).",
        "field": "rules[0].points",
    }
    assert (await gateway.post("/rulesets", json=BODY)).status_code == 401
    not_json = await gateway.post(
        "/rulesets", content=b"{", headers={**tenant.headers, "content-type": "application/json"}
    )
    assert not_json.status_code == 400


@pytest.mark.integration
async def test_names_are_unique_per_unit(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    assert (await gateway.post("/rulesets", json=BODY, headers=tenant.headers)).status_code == 201
    again = await gateway.post("/rulesets", json=BODY, headers=tenant.headers)
    assert again.status_code == 409
    assert again.json()["error"] == "name_taken"
    other = await make_tenant(pool, "globex", "sales")
    assert (await gateway.post("/rulesets", json=BODY, headers=other.headers)).status_code == 201


@pytest.mark.integration
async def test_another_units_ruleset_is_not_found(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    created = await gateway.post("/rulesets", json=BODY, headers=tenant.headers)
    path = f"/rulesets/{created.json()['id']}"
    other = await make_tenant(pool, "globex", "sales")
    assert (await gateway.get(path, headers=other.headers)).status_code == 404
    assert (await gateway.put(path, json=BODY, headers=other.headers)).status_code == 404
    assert (await gateway.delete(path, headers=other.headers)).status_code == 404
    assert (await gateway.get("/rulesets", headers=other.headers)).json() == {"rulesets": []}
