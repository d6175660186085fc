"""The read API over the scorer's projections, scoped to the token's active unit.

GET /leads/{lead_id}          one lead: score, per-ruleset scores, aliases, event count and times
GET /leads?email=...          the lead owning an alias (also external_id, phone, social, cookie),
                              found by the normalised value
GET /leads                    leads by score, highest first (page, limit)
GET /lead/{lead_id}/aliases   a lead's aliases (also under /leads/{lead_id}/aliases)
GET /events                   events, newest first (lead_id, event_type, page, limit): a
                              lead's by their time, the unit's by when they were received
GET /alias-conflicts          aliases an event named but another lead owns (lead_id, page, limit)

Lists answer ``{"<items>": [...], "page": n, "limit": n, "next_page": n or null}``; pages
start at 1 and ``limit`` is at most 100. A lead of another unit is 404, like one that does
not exist. The projections are written by the scorer, so an event shows here once scored.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest_gateway.auth import require_principal
from ingest_gateway.bodies import path_text, query_text
from ingest_gateway.errors import BadRequest, NotFound
from ingest_gateway.paging import Page
from ingest_gateway.responses import JSON
from ingest_gateway.state import state_of
from schemas import ALIAS_KINDS, AliasKind
from schemas.aliases import normalise

_KIND_ORDER = "ARRAY[" + ", ".join(f"'{kind}'" for kind in ALIAS_KINDS) + "]"

_LEAD_COLUMNS = f"""
    SELECT l.lead_id, l.score, l.event_count, l.first_event_at, l.last_event_at, l.created_at,
           (SELECT coalesce(jsonb_object_agg(s.ruleset_id, s.score), '{{}}')
            FROM lead_ruleset_scores AS s
            WHERE s.unit_id = l.unit_id AND s.lead_id = l.lead_id)::text AS engagement_scores,
           (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', a.kind, 'value', a.value)
                                      ORDER BY array_position({_KIND_ORDER}, a.kind), a.value),
                            '[]')
            FROM aliases AS a
            WHERE a.unit_id = l.unit_id AND a.lead_id = l.lead_id)::text AS aliases"""
_LEAD = _LEAD_COLUMNS + " FROM leads AS l"
# The page's leads first, then their per-ruleset scores and aliases: for those rows only,
# not for the rows an OFFSET skips.
_LEADS_PAGE = (
    _LEAD_COLUMNS
    + """ FROM (SELECT * FROM leads WHERE unit_id = $1
                ORDER BY score DESC, lead_id LIMIT $2 OFFSET $3) AS l
        ORDER BY l.score DESC, l.lead_id"""
)


def _lead_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "lead_id": row["lead_id"],
        "score": row["score"],
        "engagement_scores": msgspec.Raw(row["engagement_scores"].encode()),
        "aliases": msgspec.Raw(row["aliases"].encode()),
        "event_count": row["event_count"],
        "first_event_at": row["first_event_at"],
        "last_event_at": row["last_event_at"],
        "created_at": row["created_at"],
    }


def _not_found(lead_id: str) -> NotFound:
    return NotFound(f"No lead {lead_id!r} in this unit.")


async def get_lead(request: Request) -> Response:
    """GET /leads/{lead_id}."""
    principal = await require_principal(request)
    lead_id = path_text(request, "lead_id")
    row = await state_of(request).pool.fetchrow(
        _LEAD + " WHERE l.unit_id = $1 AND l.lead_id = $2", principal.unit_id, lead_id
    )
    if row is None:
        raise _not_found(lead_id)
    return JSON(_lead_json(row))


async def list_leads(request: Request) -> Response:
    """GET /leads: by score, highest first; or, given an alias, the lead that owns it."""
    principal = await require_principal(request)
    given = [kind for kind in ALIAS_KINDS if kind in request.query_params]
    if given:
        return await _lead_by_alias(request, principal.unit_id, given)
    page = Page.of(request)
    # No index on score (migration 0008): every score change rewrote its entry, and lead
    # updates could not be HOT. Postgres keeps the page's top rows of the unit's leads in a
    # bounded heap (a top-N sort): one pass over them (docs/scorer.md has its time).
    rows = await state_of(request).pool.fetch(
        _LEADS_PAGE,
        principal.unit_id,
        page.fetch,
        page.offset,
    )
    return page.listing("leads", [_lead_json(r) for r in rows])


async def _lead_by_alias(request: Request, unit_id: str, given: list[AliasKind]) -> Response:
    if len(given) > 1:
        raise BadRequest(
            f"Look a lead up by one alias at a time (got {', '.join(given)}).",
            code="invalid_query",
        )
    kind = given[0]
    value = normalise(kind, query_text(request, kind) or "")
    if not value:
        raise BadRequest(f"{kind}: must not be empty.", code="invalid_query")
    row = await state_of(request).pool.fetchrow(
        _LEAD
        + """ JOIN aliases AS k USING (unit_id, lead_id)
              WHERE k.unit_id = $1 AND k.kind = $2 AND k.value = $3""",
        unit_id,
        kind,
        value,
    )
    if row is None:
        raise NotFound(f"No lead of this unit has the {kind} {value!r}.")
    return JSON(_lead_json(row))


async def lead_aliases(request: Request) -> Response:
    """GET /lead/{lead_id}/aliases: the lead's aliases, highest priority first."""
    principal = await require_principal(request)
    lead_id = path_text(request, "lead_id")
    pool = state_of(request).pool
    async with pool.acquire() as conn:
        exists = await conn.fetchval(
            "SELECT 1 FROM leads WHERE unit_id = $1 AND lead_id = $2", principal.unit_id, lead_id
        )
        if not exists:
            raise _not_found(lead_id)
        rows = await conn.fetch(
            f"""SELECT kind, value, event_id, created_at FROM aliases
                WHERE unit_id = $1 AND lead_id = $2
                ORDER BY array_position({_KIND_ORDER}, kind), value""",
            principal.unit_id,
            lead_id,
        )
    aliases = [
        {
            "kind": r["kind"],
            "value": r["value"],
            "attached_at": r["created_at"],
            "attached_by_event_id": r["event_id"],
        }
        for r in rows
    ]
    return JSON({"lead_id": lead_id, "aliases": aliases})


def _filters(request: Request, unit_id: str, names: tuple[str, ...]) -> tuple[str, list[Any]]:
    """``WHERE`` conditions for the query parameters given: literal SQL, values as arguments."""
    conditions, args = ["unit_id = $1"], [unit_id]
    for name in names:
        value = query_text(request, name)
        if value:
            args.append(value)
            conditions.append(f"{name} = ${len(args)}")
    return " AND ".join(conditions), args


# A lead's events by their own time, newest first (the covering index events_by_lead);
# the unit's events newest received first: by event id, which sorts by the time the gateway
# accepted the event (an import's by the upload, then row), in the primary key's order. An
# index on the events' own time for the unit-wide list cost a random insert per event
# applied (README "Performance"); it was dropped by migration 0008.
_BY_LEAD_TIME = "ORDER BY occurred_at DESC, event_id DESC"
_BY_RECEIPT = "ORDER BY event_id DESC"


async def list_events(request: Request) -> Response:
    """GET /events?lead_id=&event_type=&page=&limit=: newest first; a lead's by the events'
    time, the unit's by the time they were received."""
    principal = await require_principal(request)
    page = Page.of(request)
    where, args = _filters(request, principal.unit_id, ("lead_id", "event_type"))
    order = _BY_LEAD_TIME if query_text(request, "lead_id") else _BY_RECEIPT
    n = len(args)
    rows = await state_of(request).pool.fetch(
        f"""SELECT event_id, lead_id, event_type, occurred_at, source, skip_triggers,
                   import_id, import_row, points, score_after, metadata, scored_at
            FROM events WHERE {where}
            {order} LIMIT ${n + 1} OFFSET ${n + 2}""",
        *args,
        page.fetch,
        page.offset,
    )
    events = [
        {
            "event_id": r["event_id"],
            "lead_id": r["lead_id"],
            "event_type": r["event_type"],
            "timestamp": r["occurred_at"],
            "source": r["source"],
            "skip_triggers": r["skip_triggers"],
            "import_id": r["import_id"],
            "row": r["import_row"],
            "points": r["points"],
            "score_after": r["score_after"],
            "metadata": msgspec.Raw(r["metadata"].encode()),
            "scored_at": r["scored_at"],
        }
        for r in rows
    ]
    return page.listing("events", events)


async def list_alias_conflicts(request: Request) -> Response:
    """GET /alias-conflicts?lead_id=&page=&limit=: newest first; lead_id matches either side."""
    principal = await require_principal(request)
    page = Page.of(request)
    args: list[Any] = [principal.unit_id]
    where = "unit_id = $1"
    lead_id = query_text(request, "lead_id")
    if lead_id:
        args.append(lead_id)
        where += " AND (owner_lead_id = $2 OR event_lead_id = $2)"
    n = len(args)
    rows = await state_of(request).pool.fetch(
        f"""SELECT event_id, kind, value, owner_lead_id, event_lead_id, detected_at
            FROM alias_conflicts WHERE {where}
            ORDER BY detected_at DESC, event_id DESC, kind, value
            LIMIT ${n + 1} OFFSET ${n + 2}""",
        *args,
        page.fetch,
        page.offset,
    )
    conflicts = [
        {
            "event_id": r["event_id"],
            "alias": {"kind": r["kind"], "value": r["value"]},
            "owner_lead_id": r["owner_lead_id"],
            "event_lead_id": r["event_lead_id"],
            "detected_at": r["detected_at"],
        }
        for r in rows
    ]
    return page.listing("conflicts", conflicts)


ROUTES: list[Route] = [
    Route("/leads", list_leads, methods=["GET"]),
    Route("/leads/{lead_id}", get_lead, methods=["GET"]),
    Route("/lead/{lead_id}/aliases", lead_aliases, methods=["GET"]),
    Route("/leads/{lead_id}/aliases", lead_aliases, methods=["GET"]),
    Route("/events", list_events, methods=["GET"]),
    Route("/alias-conflicts", list_alias_conflicts, methods=["GET"]),
]
