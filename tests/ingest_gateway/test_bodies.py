"""Text from the path, the query and JSON fields reaches Postgres only if Postgres can store it."""

from __future__ import annotations

import httpx
import pytest

from ingest_gateway.app import routes
from tests.conftest import Tenant

pytestmark = pytest.mark.integration

_PATHS = [
    (method, route.path.replace("{", "%00{").format(**dict.fromkeys(route.param_convertors, "x")))
    for route in routes()
    if route.param_convertors
    for method in sorted(route.methods or ())
    if method != "HEAD"
]


def test_every_route_with_a_path_parameter_is_covered() -> None:
    assert len(_PATHS) >= 10  # leads, aliases, rulesets, triggers, firings, imports


@pytest.mark.parametrize(("method", "path"), _PATHS)
async def test_a_nul_in_a_path_parameter_is_a_400_naming_it(
    gateway: httpx.AsyncClient, tenant: Tenant, method: str, path: str
) -> None:
    response = await gateway.request(method, path, headers=tenant.headers, json={})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_path"
    assert "(in the path): holds a control character (U+0000) at position 1" in body["detail"]


@pytest.mark.parametrize(
    "query",
    [
        "/leads?email=a%00@b.c",
        "/leads?cookie=%01",
        "/events?lead_id=%00",
        "/events?event_type=open%00",
        "/alias-conflicts?lead_id=%00",
        "/triggers/trg_x/firings?lead_id=%00",
        "/triggers/trg_x/firings?status=%00",
    ],
)
async def test_a_nul_in_a_query_parameter_is_a_400_naming_it(
    gateway: httpx.AsyncClient, tenant: Tenant, query: str
) -> None:
    response = await gateway.get(query, headers=tenant.headers)
    assert response.status_code == 400, response.text
    body = response.json()
    name = query.split("?")[1].split("=")[0]
    assert body == {
        "error": "invalid_query",
        "detail": body["detail"],
    }
    assert body["detail"].startswith(f"{name}: holds a control character")


async def test_a_nul_in_the_active_unit_is_a_400(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await gateway.post(
        "/org-units/active", json={"unit_id": "ou_\x00"}, headers=tenant.headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "unit_id"
