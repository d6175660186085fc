"""Bearer-token authentication and the active Organizational Unit.

A token's principal is cached for ``token_cache_seconds`` (LEADVIBE_TOKEN_CACHE_SECONDS,
default 1): a revocation, or a unit switch made through another gateway process, takes
effect everywhere within that time; the process that switches the unit forgets the token
at once, so the client's next request there acts in the new unit.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest_gateway.bodies import read_json
from ingest_gateway.errors import BadRequest, Forbidden, Unauthorized
from ingest_gateway.fields import identifier
from ingest_gateway.state import state_of
from leadvibe.tenancy import Principal, set_active_unit


async def require_principal(request: Request) -> Principal:
    """The principal of the request's Bearer token; 401 if missing, malformed or unknown."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("Send an 'Authorization: Bearer <token>' header.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    state = state_of(request)
    principal = await state.tokens.authenticate(state.pool, token)
    if principal is None:
        raise Unauthorized(
            "The token is unknown or revoked; create one with 'leadvibe token create'."
        )
    return principal


async def set_active_org_unit(request: Request) -> JSONResponse:
    """POST /org-units/active {"unit_id": ...}: switch the token's active unit."""
    principal = await require_principal(request)
    body = await read_json(request)
    unit_id = body.get("unit_id") if isinstance(body, dict) else None
    if not isinstance(unit_id, str) or not unit_id:
        raise BadRequest("unit_id: required, a unit id of your organisation.", code="invalid_field")
    identifier(unit_id, "unit_id")
    state = state_of(request)
    if not await set_active_unit(state.pool, principal, unit_id):
        raise Forbidden(f"Unit {unit_id!r} is not a unit of your organisation.")
    state.tokens.forget(principal.token_hash)
    return JSONResponse({"active_unit_id": unit_id})
