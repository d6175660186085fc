"""Milestone triggers over the API, scoped to the token's active unit.

POST   /triggers                 create; 201 with the trigger and its signing secret (shown once)
GET    /triggers                 the unit's triggers, oldest first
GET    /triggers/{id}            one trigger
PUT    /triggers/{id}            replace its settings (same body as POST)
DELETE /triggers/{id}            delete it, its firings, and their pending deliveries; 204
GET    /triggers/{id}/firings    its firings, newest first, with every delivery attempt
                                 (status, lead_id, page, limit)
POST   /triggers/{id}/secret/rotate     a new signing secret (shown once); the previous one
                                        signs too until the rollover window ends
DELETE /triggers/{id}/secret/previous   stop signing with the previous secret now; 204

A unit has at most ``LEADVIBE_MAX_TRIGGERS_PER_UNIT`` triggers (409 ``trigger_limit``).

A trigger body is ``{"name", "score_threshold": int, "event_type"?: str|null,
"fire_mode": "once"|"always", "webhook_url", "active"?: bool (default true)}``; an
unknown field is an error, so a misspelt one is not silently ignored. The webhook URL is
checked here (form, and the addresses its host resolves to) and again at every delivery.
Lists page like the read API's: ``{"firings": [...], "page", "limit", "next_page"}``.

Editing a trigger changes what it does from then on: its firings so far stay, and so does
its fire-once memory (a lead that fired it never fires it again, whatever the new
threshold). Deactivating it stops new firings; deliveries already pending still go out,
to its current URL. Deleting it also deletes its firings and cancels their deliveries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Literal

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest_gateway.auth import require_principal
from ingest_gateway.bodies import path_text, query_text, read_json
from ingest_gateway.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from ingest_gateway.fields import flag, identifier, integer, invalid, json_object, name
from ingest_gateway.paging import Page
from ingest_gateway.responses import JSON
from ingest_gateway.state import state_of
from schemas.ids import sortable_id
from trigger_service.webhooks import RefusedDestination, check_url, signing_secret

log = logging.getLogger(__name__)

FIRE_MODES = ("once", "always")
NAME_LIMIT = 200
EVENT_TYPE_LIMIT = 200
THRESHOLD_LIMIT = 2**53 - 1  # exact in every JSON client
_DELIVERY_STATUSES = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class TriggerSpec:
    """What a client sets on a trigger."""

    name: str
    score_threshold: int
    event_type: str | None
    fire_mode: Literal["once", "always"]
    webhook_url: str
    active: bool

    def values(self) -> tuple[str, int, str | None, str, str, bool]:
        """The trigger's columns name to active, in the order of its SQL."""
        return (
            self.name,
            self.score_threshold,
            self.event_type,
            self.fire_mode,
            self.webhook_url,
            self.active,
        )


_FIELDS = {field.name for field in fields(TriggerSpec)}
"""The fields a trigger's body may have: the spec's own."""


def parse_spec(body: Any) -> TriggerSpec:
    """The trigger in a request body; 400 naming the first field that is wrong."""
    body = json_object(body, _FIELDS, "a trigger")
    trigger_name = name(body, NAME_LIMIT)
    threshold = integer(body.get("score_threshold"), "score_threshold", THRESHOLD_LIMIT)
    event_type = body.get("event_type")
    if event_type is not None:
        if not isinstance(event_type, str) or not event_type.strip():
            raise invalid("event_type", "a non-empty string, or null for any event type.")
        event_type = identifier(event_type.strip(), "event_type")
        if len(event_type) > EVENT_TYPE_LIMIT:
            raise invalid("event_type", f"at most {EVENT_TYPE_LIMIT} characters.")
    fire_mode = body.get("fire_mode")
    if fire_mode not in FIRE_MODES:
        raise invalid(
            "fire_mode",
            'required, "once" (at most one firing per lead, ever) or "always" (every crossing).',
        )
    url = body.get("webhook_url")
    if not isinstance(url, str) or not url.strip():
        raise invalid("webhook_url", "required, the http or https URL that firings are POSTed to.")
    active = flag(body, "active", default=True)
    url = identifier(url.strip(), "webhook_url")
    return TriggerSpec(trigger_name, threshold, event_type, fire_mode, url, active)


async def _checked_spec(request: Request) -> TriggerSpec:
    spec = parse_spec(await read_json(request))
    settings = state_of(request).settings
    try:
        await check_url(spec.webhook_url, allow_private=settings.allow_private_webhooks)
    except RefusedDestination as exc:
        raise BadRequest(
            f"webhook_url: {exc}.", code="webhook_url_refused", field="webhook_url"
        ) from None
    return spec


_COLUMNS = """trigger_id, name, score_threshold, event_type, fire_mode, webhook_url, active,
    created_at, updated_at, secret_version,
    CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END
        AS previous_secret_expires_at"""


def _trigger(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["trigger_id"],
        "name": row["name"],
        "score_threshold": row["score_threshold"],
        "event_type": row["event_type"],
        "fire_mode": row["fire_mode"],
        "webhook_url": row["webhook_url"],
        "active": row["active"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "previous_secret_expires_at": row["previous_secret_expires_at"],
    }


def _name_taken(spec: TriggerSpec) -> Conflict:
    return Conflict(f"This unit has a trigger named {spec.name!r} already.", code="name_taken")


async def create_trigger(request: Request) -> Response:
    """POST /triggers: 201 with the trigger and ``signing_secret``, which is never shown again."""
    principal = await require_principal(request)
    state = state_of(request)
    if not state.settings.webhook_secret:
        raise ServiceUnavailable(
            "Webhook signing is not configured on this server (LEADVIBE_WEBHOOK_SECRET)."
        )
    spec = await _checked_spec(request)
    cap = state.settings.max_triggers_per_unit
    try:
        async with state.pool.acquire() as conn, conn.transaction():
            # Creations in one unit take turns (the lock leaves foreign-key checks alone),
            # so that two at once cannot both pass the cap; the count is a statement of
            # its own, to see the triggers committed while this one waited.
            await conn.execute(
                "SELECT FROM org_units WHERE unit_id = $1 FOR NO KEY UPDATE", principal.unit_id
            )
            count = await conn.fetchval(
                "SELECT count(*) FROM triggers WHERE unit_id = $1", principal.unit_id
            )
            if count >= cap:
                raise Conflict(
                    f"This unit has {count} triggers, the most it may have "
                    f"(LEADVIBE_MAX_TRIGGERS_PER_UNIT={cap}); delete one before creating another.",
                    code="trigger_limit",
                )
            row = await conn.fetchrow(
                f"""INSERT INTO triggers (trigger_id, unit_id, name, score_threshold,
                        event_type, fire_mode, webhook_url, active)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    RETURNING {_COLUMNS}""",
                sortable_id("trg_"),
                principal.unit_id,
                *spec.values(),
            )
    except asyncpg.UniqueViolationError:
        raise _name_taken(spec) from None
    assert row is not None
    secret = signing_secret(state.settings.webhook_secret, row["trigger_id"], row["secret_version"])
    headers = {"Location": f"/triggers/{row['trigger_id']}"}
    return JSON({**_trigger(row), "signing_secret": secret}, status_code=201, headers=headers)


async def list_triggers(request: Request) -> Response:
    """GET /triggers: every trigger of the active unit, oldest first."""
    principal = await require_principal(request)
    rows = await state_of(request).pool.fetch(
        f"SELECT {_COLUMNS} FROM triggers WHERE unit_id = $1 ORDER BY trigger_id",
        principal.unit_id,
    )
    return JSON({"triggers": [_trigger(r) for r in rows]})


def _not_found(trigger_id: str) -> NotFound:
    return NotFound(f"No trigger {trigger_id!r} in this unit.")


async def get_trigger(request: Request) -> Response:
    """GET /triggers/{id} (without its signing secret)."""
    principal = await require_principal(request)
    trigger_id = path_text(request, "trigger_id")
    row = await state_of(request).pool.fetchrow(
        f"SELECT {_COLUMNS} FROM triggers WHERE unit_id = $1 AND trigger_id = $2",
        principal.unit_id,
        trigger_id,
    )
    if row is None:
        raise _not_found(trigger_id)
    return JSON(_trigger(row))


async def replace_trigger(request: Request) -> Response:
    """PUT /triggers/{id}: new settings; its firings so far (and fire-once history) stay."""
    principal = await require_principal(request)
    trigger_id = path_text(request, "trigger_id")
    spec = await _checked_spec(request)
    try:
        row = await state_of(request).pool.fetchrow(
            f"""UPDATE triggers SET name = $3, score_threshold = $4, event_type = $5,
                    fire_mode = $6, webhook_url = $7, active = $8, updated_at = now()
                WHERE unit_id = $1 AND trigger_id = $2
                RETURNING {_COLUMNS}""",
            principal.unit_id,
            trigger_id,
            *spec.values(),
        )
    except asyncpg.UniqueViolationError:
        raise _name_taken(spec) from None
    if row is None:
        raise _not_found(trigger_id)
    return JSON(_trigger(row))


async def delete_trigger(request: Request) -> Response:
    """DELETE /triggers/{id}: 204; its firings and their pending deliveries go with it."""
    principal = await require_principal(request)
    trigger_id = path_text(request, "trigger_id")
    async with state_of(request).pool.acquire() as conn, conn.transaction():
        # Waits for a consumer batch firing this trigger to commit (it key-share locks
        # it), so the next statement sees and deletes that batch's firings too.
        status = await conn.execute(
            "DELETE FROM triggers WHERE unit_id = $1 AND trigger_id = $2",
            principal.unit_id,
            trigger_id,
        )
        if status != "DELETE 1":
            raise _not_found(trigger_id)
        await conn.execute(
            "DELETE FROM trigger_firings WHERE unit_id = $1 AND trigger_id = $2",
            principal.unit_id,
            trigger_id,
        )
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    """POST /triggers/{id}/secret/rotate: 200 with the new ``signing_secret`` (shown once).

    Deliveries are signed with the new and the previous secret until
    ``previous_secret_expires_at`` (``LEADVIBE_WEBHOOK_SECRET_ROLLOVER`` seconds from
    now); a secret rotated out before is dropped at once, so at most two ever sign.
    """
    principal = await require_principal(request)
    state = state_of(request)
    if not state.settings.webhook_secret:
        raise ServiceUnavailable(
            "Webhook signing is not configured on this server (LEADVIBE_WEBHOOK_SECRET)."
        )
    trigger_id = path_text(request, "trigger_id")
    row = await state.pool.fetchrow(
        f"""UPDATE triggers
            SET secret_version = secret_version + 1,
                previous_secret_version = secret_version,
                previous_secret_expires_at = now() + make_interval(secs => $3),
                updated_at = now()
            WHERE unit_id = $1 AND trigger_id = $2
            RETURNING {_COLUMNS}""",
        principal.unit_id,
        trigger_id,
        float(state.settings.webhook_secret_rollover),
    )
    if row is None:
        raise _not_found(trigger_id)
    log.info("trigger %s: signing secret rotated to version %d", trigger_id, row["secret_version"])
    secret = signing_secret(state.settings.webhook_secret, trigger_id, row["secret_version"])
    return JSON({**_trigger(row), "signing_secret": secret})


async def revoke_previous_secret(request: Request) -> Response:
    """DELETE /triggers/{id}/secret/previous: 204; only the current secret signs from now."""
    principal = await require_principal(request)
    trigger_id = path_text(request, "trigger_id")
    status = await state_of(request).pool.execute(
        """UPDATE triggers
           SET previous_secret_version = NULL, previous_secret_expires_at = NULL,
               updated_at = now()
           WHERE unit_id = $1 AND trigger_id = $2""",
        principal.unit_id,
        trigger_id,
    )
    if status != "UPDATE 1":
        raise _not_found(trigger_id)
    return Response(status_code=204)


def _firing(row: asyncpg.Record, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row["firing_id"],
        "lead_id": row["lead_id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "event_timestamp": row["occurred_at"],
        "score_threshold": row["score_threshold"],
        "score_before": row["score_before"],
        "score_after": row["score_after"],
        "fired_at": row["fired_at"],
        "delivery_status": row["delivery_status"],
        "next_attempt_at": row["next_attempt_at"],
        "delivered_at": row["delivered_at"],
        "last_error": row["last_error"],
        "attempts": attempts,
    }


async def list_firings(request: Request) -> Response:
    """GET /triggers/{id}/firings?status=&lead_id=&page=&limit=: newest first."""
    principal = await require_principal(request)
    trigger_id = path_text(request, "trigger_id")
    page = Page.of(request)
    status = query_text(request, "status") or None
    if status is not None and status not in _DELIVERY_STATUSES:
        raise BadRequest(
            f"status: must be one of {', '.join(_DELIVERY_STATUSES)}, got {status!r}.",
            code="invalid_query",
        )
    lead_id = query_text(request, "lead_id") or None
    pool = state_of(request).pool
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        exists = await conn.fetchval(
            "SELECT true FROM triggers WHERE unit_id = $1 AND trigger_id = $2",
            principal.unit_id,
            trigger_id,
        )
        if not exists:
            raise _not_found(trigger_id)
        rows = await conn.fetch(
            """SELECT firing_id, lead_id, event_id, event_type, occurred_at, score_threshold,
                      score_before, score_after, fired_at, delivery_status, next_attempt_at,
                      delivered_at, last_error
               FROM trigger_firings
               WHERE unit_id = $1 AND trigger_id = $2
                 AND ($3::text IS NULL OR delivery_status = $3)
                 AND ($4::text IS NULL OR lead_id = $4)
               ORDER BY fired_at DESC, firing_id
               LIMIT $5 OFFSET $6""",
            principal.unit_id,
            trigger_id,
            status,
            lead_id,
            page.fetch,
            page.offset,
        )
        attempt_rows = await conn.fetch(
            """SELECT firing_id, attempt, started_at, duration_ms, status_code, error
               FROM webhook_attempts
               WHERE unit_id = $1 AND firing_id = ANY($2::text[])
               ORDER BY firing_id, attempt""",
            principal.unit_id,
            [r["firing_id"] for r in rows],
        )
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in attempt_rows:
        attempts.setdefault(a["firing_id"], []).append(
            {
                "attempt": a["attempt"],
                "started_at": a["started_at"],
                "duration_ms": a["duration_ms"],
                "status_code": a["status_code"],
                "error": a["error"],
            }
        )
    firings = [_firing(r, attempts.get(r["firing_id"], [])) for r in rows]
    return page.listing("firings", firings)


ROUTES: list[Route] = [
    Route("/triggers", create_trigger, methods=["POST"]),
    Route("/triggers", list_triggers, methods=["GET"]),
    Route("/triggers/{trigger_id}", get_trigger, methods=["GET"]),
    Route("/triggers/{trigger_id}", replace_trigger, methods=["PUT"]),
    Route("/triggers/{trigger_id}", delete_trigger, methods=["DELETE"]),
    Route("/triggers/{trigger_id}/firings", list_firings, methods=["GET"]),
    Route("/triggers/{trigger_id}/secret/rotate", rotate_secret, methods=["POST"]),
    Route("/triggers/{trigger_id}/secret/previous", revoke_previous_secret, methods=["DELETE"]),
]
