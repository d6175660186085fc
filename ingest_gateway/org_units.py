"""The token's organisation's units, by name: ``GET /org-units`` and ``POST /org-units``.

GET  /org-units          every unit of the token's organisation, oldest first, the one the
                         token acts in marked ``"active": true``
POST /org-units          ``{"name": ...}``: a new unit (201); 409 ``name_taken`` if the
                         organisation has one of that name. The token stays on its unit:
                         switch with ``POST /org-units/active {"unit_id": ...}``.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest_gateway.auth import require_principal, set_active_org_unit
from ingest_gateway.bodies import read_json
from ingest_gateway.errors import Conflict
from ingest_gateway.fields import json_object, name
from ingest_gateway.responses import JSON
from ingest_gateway.state import state_of
from leadvibe.tenancy import Unit, create_unit, units

NAME_LIMIT: Final = 200


def _unit(unit: Unit, active_unit_id: str) -> dict[str, Any]:
    return {
        "unit_id": unit.unit_id,
        "name": unit.name,
        "active": unit.unit_id == active_unit_id,
        "created_at": unit.created_at,
    }


async def list_org_units(request: Request) -> Response:
    """GET /org-units: the organisation's units, oldest first; which one is active."""
    principal = await require_principal(request)
    found = await units(state_of(request).pool, org_id=principal.org_id)
    return JSON(
        {
            "org_units": [_unit(u, principal.unit_id) for u in found],
            "active_unit_id": principal.unit_id,
        }
    )


async def create_org_unit(request: Request) -> Response:
    """POST /org-units {"name": ...}: 201 with the new unit."""
    principal = await require_principal(request)
    body = json_object(await read_json(request), {"name"}, "a unit")
    unit_name = name(body, NAME_LIMIT)
    unit = await create_unit(state_of(request).pool, principal.org_id, unit_name)
    if unit is None:
        raise Conflict(
            f"Your organisation has a unit named {unit_name!r} already; "
            "GET /org-units lists its id.",
            code="name_taken",
        )
    return JSON(_unit(unit, principal.unit_id), status_code=201)


ROUTES: list[Route] = [
    Route("/org-units", list_org_units, methods=["GET"]),
    Route("/org-units", create_org_unit, methods=["POST"]),
    Route("/org-units/active", set_active_org_unit, methods=["POST"]),
]
