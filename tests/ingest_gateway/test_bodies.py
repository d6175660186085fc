"""Request bodies and parameters: JSON bodies counted before they are decoded and read
within deadlines; text from the path, the query and JSON fields reaches Postgres only if
Postgres can store it."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import msgspec
import pytest
from starlette.routing import Route

from ingest_gateway.app import routes
from ingest_gateway.bodies import count_values, count_values_at_most
from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.gateway import gateway_client
from tests.ingest_gateway.helpers import published_count

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        "a, b: [c] {d}",
        {"events": [{"lead_id": "ld_1", "aliases": [{"kind": "email", "value": "a@b.c"}]}]},
        [1, [2, [3, {"a": None, "b": [True, 1.5, "x"]}]]],
    ],
)
def test_the_count_bounds_the_values_and_without_strings_is_exact_on_their_structure(
    value: object,
) -> None:
    body = msgspec.json.encode(value)

    def values(v: object) -> int:
        if isinstance(v, list):
            return 1 + sum(map(values, v))
        if isinstance(v, dict):
            return 1 + len(v) + sum(map(values, v.values()))
        return 1

    exact = values(value)
    empty = body.count(b"[]") + body.count(b"{}")  # an empty container counts one value more
    assert count_values(body) == exact + empty
    assert count_values_at_most(body) >= count_values(body)


@pytest.mark.integration
async def test_a_json_bomb_is_413_before_it_is_decoded(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    """A megabyte of empty lists would be 21 MB of objects; refused for what its bytes cost."""
    bomb = b"[" + b"[]," * 350_000 + b"[]]"
    tracemalloc.start()
    try:
        response = await gateway.post("/ingest", content=bomb, headers={**tenant.headers, **JSON})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.json()["error"] == "too_many_values"
    assert "over 209,715 values" in response.json()["detail"]
    assert peak < 10 * 1024 * 1024, f"{peak / 1e6:.1f} MB allocated"
    assert await published_count(settings) == 0


@pytest.mark.integration
async def test_strings_full_of_commas_are_not_values(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Over the quick bound, under the count without strings: decoded, and judged as usual."""
    rules = [{"event_type": f"{i}" + "," * 190, "points": 1} for i in range(200)]
    body = msgspec.json.encode({"name": "commas", "rules": rules})
    assert count_values_at_most(body) > 1024 * 1024 // 50 > count_values(body)
    response = await gateway.post("/rulesets", content=body, headers={**tenant.headers, **JSON})
    assert response.status_code == 201, response.text


@pytest.mark.integration
async def test_json_nested_too_deeply_is_400(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    response = await gateway.post("/ingest", content=deep, headers={**tenant.headers, **JSON})
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_json",
        "detail": "The body is not usable JSON: it nests arrays or objects too deeply.",
    }


@pytest.mark.integration
async def test_a_json_body_that_stops_coming_is_408(settings: Settings, tenant: Tenant) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"lead_id": "ld_1", '
        await asyncio.Event().wait()  # the client goes quiet
        yield b""  # pragma: no cover

    async with gateway_client(replace(settings, body_idle_timeout=0.3)) as client:
        response = await client.post("/ingest", content=body(), headers={**tenant.headers, **JSON})
    assert response.status_code == 408
    assert response.json()["error"] == "body_timeout"


_PATHS = [
    (method, route.path.replace("{", "%00{").format(**dict.fromkeys(route.param_convertors, "x")))
    for route in routes()
    if isinstance(route, Route) and route.param_convertors  # not the static files' Mount
    for method in sorted(route.methods or ())
    if method != "HEAD"
]


def test_every_route_with_a_path_parameter_is_covered() -> None:
    assert len(_PATHS) >= 10  # leads, aliases, rulesets, triggers, firings, imports


@pytest.mark.integration
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
@pytest.mark.integration
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


@pytest.mark.integration
async def test_a_nul_in_the_active_unit_is_a_400(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await gateway.post(
        "/org-units/active", json={"unit_id": "ou_\x00"}, headers=tenant.headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "unit_id"
