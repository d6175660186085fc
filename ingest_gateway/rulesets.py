"""Scoring rulesets over the API, scoped to the token's active unit.

POST /rulesets, GET /rulesets, GET/PUT/DELETE /rulesets/{id}. A ruleset is
``{"name", "active", "starts_at", "ends_at", "rules": [{"event_type", "points"}]}``;
points are integers, negative allowed. PUT replaces the whole ruleset.

The scorer reads the rulesets for every batch, so a change applies to events scored from
then on (within a second), without a restart. Events already scored keep their points:
rescoring history is a replay's job. Deleting a ruleset likewise stops it scoring; the
points it gave stay in the leads' scores (and in ``engagement_scores``, under its id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest_gateway.auth import require_principal
from ingest_gateway.bodies import path_text, read_json
from ingest_gateway.errors import Conflict, NotFound
from ingest_gateway.fields import flag, identifier, integer, invalid, json_object, name
from ingest_gateway.responses import JSON
from ingest_gateway.state import state_of
from leadvibe.db import Connection
from schemas.ids import sortable_id

NAME_LIMIT = 200
EVENT_TYPE_LIMIT = 200
RULES_LIMIT = 1000
POINTS_LIMIT = 2**31 - 1
_FIELDS = {"name", "active", "starts_at", "ends_at", "rules"}


@dataclass(frozen=True)
class RulesetSpec:
    """A ruleset as a client sends it, validated."""

    name: str
    active: bool
    starts_at: datetime | None
    ends_at: datetime | None
    rules: tuple[tuple[str, int], ...]
    """(event_type, points), in the client's order."""


def _timestamp(body: dict[str, Any], field: str) -> datetime | None:
    raw = body.get(field)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise invalid(field, "must be an RFC 3339 timestamp string or null.")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(field, f"{raw!r} is not an RFC 3339 timestamp.") from None
    if value.tzinfo is None:
        raise invalid(field, f"{raw!r} needs a UTC offset, such as Z or +02:00.")
    return value


def _rule(item: object, index: int, seen: set[str]) -> tuple[str, int]:
    where = f"rules[{index}]"
    if not isinstance(item, dict):
        raise invalid(where, 'must be an object {"event_type": ..., "points": ...}.')
    for key in item:
        if key not in ("event_type", "points"):
            raise invalid(f"{where}.{key}", "unknown field; a rule has event_type and points.")
    event_type = item.get("event_type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise invalid(f"{where}.event_type", "required, a non-empty string.")
    event_type = identifier(event_type.strip(), f"{where}.event_type")
    if len(event_type) > EVENT_TYPE_LIMIT:
        raise invalid(f"{where}.event_type", f"at most {EVENT_TYPE_LIMIT} characters.")
    if event_type in seen:
        raise invalid(f"{where}.event_type", f"{event_type!r} has a rule already.")
    seen.add(event_type)
    return event_type, integer(item.get("points"), f"{where}.points", POINTS_LIMIT)


def parse_ruleset(body: Any) -> RulesetSpec:
    """The ruleset in a request body; 400 naming the first field that is wrong."""
    body = json_object(body, _FIELDS, "a ruleset")
    ruleset_name = name(body, NAME_LIMIT)
    active = flag(body, "active", default=True)
    starts_at, ends_at = _timestamp(body, "starts_at"), _timestamp(body, "ends_at")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise invalid("ends_at", "must be after starts_at.")
    rules = body.get("rules")
    if not isinstance(rules, list):
        raise invalid("rules", 'required, a list of {"event_type": ..., "points": ...}.')
    if len(rules) > RULES_LIMIT:
        raise invalid("rules", f"at most {RULES_LIMIT} rules per ruleset.")
    seen: set[str] = set()
    parsed = tuple(_rule(item, i, seen) for i, item in enumerate(rules))
    return RulesetSpec(ruleset_name, active, starts_at, ends_at, parsed)


# --- storage -------------------------------------------------------------------------

_SELECT = """
    SELECT s.ruleset_id AS id, s.name, s.active, s.starts_at, s.ends_at,
           s.created_at, s.updated_at,
           coalesce(array_agg(r.event_type ORDER BY r.position)
                    FILTER (WHERE r.event_type IS NOT NULL), '{{}}') AS event_types,
           coalesce(array_agg(r.points ORDER BY r.position)
                    FILTER (WHERE r.event_type IS NOT NULL), '{{}}') AS points
    FROM rulesets AS s LEFT JOIN rules AS r USING (ruleset_id)
    WHERE s.unit_id = $1 {where}
    GROUP BY s.ruleset_id
    ORDER BY s.ruleset_id"""


def _as_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "active": row["active"],
        "starts_at": row["starts_at"],
        "ends_at": row["ends_at"],
        "rules": [
            {"event_type": t, "points": p}
            for t, p in zip(row["event_types"], row["points"], strict=True)
        ],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


async def _fetch_one(conn: Connection | asyncpg.Pool, unit_id: str, ruleset_id: str) -> Any:
    row = await conn.fetchrow(_SELECT.format(where="AND s.ruleset_id = $2"), unit_id, ruleset_id)
    if row is None:
        raise NotFound(f"No ruleset {ruleset_id!r} in this unit.")
    return _as_json(row)


async def _write_rules(conn: Connection, ruleset_id: str, spec: RulesetSpec) -> None:
    await conn.execute("DELETE FROM rules WHERE ruleset_id = $1", ruleset_id)
    await conn.execute(
        """INSERT INTO rules (ruleset_id, event_type, points, position)
           SELECT $1, event_type, points, position
           FROM unnest($2::text[], $3::int[])
                WITH ORDINALITY AS r (event_type, points, position)""",
        ruleset_id,
        [event_type for event_type, _ in spec.rules],
        [points for _, points in spec.rules],
    )


def _name_taken(spec: RulesetSpec) -> Conflict:
    return Conflict(f"This unit has a ruleset named {spec.name!r} already.", code="name_taken")


# --- endpoints -----------------------------------------------------------------------


async def create_ruleset(request: Request) -> Response:
    """POST /rulesets: 201 with the ruleset and its id."""
    principal = await require_principal(request)
    spec = parse_ruleset(await read_json(request))
    ruleset_id = sortable_id("rs_")
    async with state_of(request).pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(
                """INSERT INTO rulesets (ruleset_id, unit_id, name, active, starts_at, ends_at)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                ruleset_id,
                principal.unit_id,
                spec.name,
                spec.active,
                spec.starts_at,
                spec.ends_at,
            )
        except asyncpg.UniqueViolationError:
            raise _name_taken(spec) from None
        await _write_rules(conn, ruleset_id, spec)
        ruleset = await _fetch_one(conn, principal.unit_id, ruleset_id)
    return JSON(ruleset, status_code=201, headers={"Location": f"/rulesets/{ruleset_id}"})


async def list_rulesets(request: Request) -> Response:
    """GET /rulesets: the unit's rulesets, oldest first."""
    principal = await require_principal(request)
    rows = await state_of(request).pool.fetch(_SELECT.format(where=""), principal.unit_id)
    return JSON({"rulesets": [_as_json(row) for row in rows]})


async def get_ruleset(request: Request) -> Response:
    """GET /rulesets/{id}."""
    principal = await require_principal(request)
    ruleset_id = path_text(request, "ruleset_id")
    return JSON(await _fetch_one(state_of(request).pool, principal.unit_id, ruleset_id))


async def replace_ruleset(request: Request) -> Response:
    """PUT /rulesets/{id}: replace name, flags, dates and every rule."""
    principal = await require_principal(request)
    ruleset_id = path_text(request, "ruleset_id")
    spec = parse_ruleset(await read_json(request))
    async with state_of(request).pool.acquire() as conn, conn.transaction():
        try:
            status = await conn.execute(
                """UPDATE rulesets SET name = $3, active = $4, starts_at = $5, ends_at = $6,
                                       updated_at = now()
                   WHERE unit_id = $1 AND ruleset_id = $2""",
                principal.unit_id,
                ruleset_id,
                spec.name,
                spec.active,
                spec.starts_at,
                spec.ends_at,
            )
        except asyncpg.UniqueViolationError:
            raise _name_taken(spec) from None
        if status != "UPDATE 1":
            raise NotFound(f"No ruleset {ruleset_id!r} in this unit.")
        await _write_rules(conn, ruleset_id, spec)
        ruleset = await _fetch_one(conn, principal.unit_id, ruleset_id)
    return JSON(ruleset)


async def delete_ruleset(request: Request) -> Response:
    """DELETE /rulesets/{id}: 204; the ruleset stops scoring new events."""
    principal = await require_principal(request)
    ruleset_id = path_text(request, "ruleset_id")
    status = await state_of(request).pool.execute(
        "DELETE FROM rulesets WHERE unit_id = $1 AND ruleset_id = $2",
        principal.unit_id,
        ruleset_id,
    )
    if status != "DELETE 1":
        raise NotFound(f"No ruleset {ruleset_id!r} in this unit.")
    return Response(status_code=204)


ROUTES: list[Route] = [
    Route("/rulesets", create_ruleset, methods=["POST"]),
    Route("/rulesets", list_rulesets, methods=["GET"]),
    Route("/rulesets/{ruleset_id}", get_ruleset, methods=["GET"]),
    Route("/rulesets/{ruleset_id}", replace_ruleset, methods=["PUT"]),
    Route("/rulesets/{ruleset_id}", delete_ruleset, methods=["DELETE"]),
]
