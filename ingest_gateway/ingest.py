"""POST /ingest: live events as JSON, through the validation and the topic imports use.

The body is one event, or ``{"events": [...]}`` with up to 1,000. An event is
``{"lead_id"?, "aliases"?: [{"kind", "value"}], "event_type", "timestamp"?, "metadata"?}``,
checked by :func:`ingest_gateway.events.check_event` as a CSV row is, with at most
:data:`~ingest_gateway.events.MAX_ALIASES` aliases and metadata of at most 100 KB whose
keys and strings are free text (:mod:`ingest_gateway.text`). So an accepted event always
fits its topic, and so does the scorer's record of it (``test_events.py`` builds the
largest of each). A request is taken whole or not at all: one invalid event answers 400
listing every invalid one, and nothing is published.

The body is decoded by msgspec straight into the request's types (:class:`EventIn`,
:class:`BatchIn`); only a body that does not fit them (a wrong type somewhere) is decoded
again as plain JSON, to name every invalid event as the API promises. Accepted events go
to Kafka in the batches all concurrent requests share (:mod:`ingest_gateway.live`), and the
202 comes once Kafka acknowledged this request's events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ingest_gateway.auth import require_principal
from ingest_gateway.bodies import decode_json, read_json_bytes
from ingest_gateway.errors import BadRequest, PayloadTooLarge
from ingest_gateway.events import (
    MAX_ALIASES,
    CheckedEvent,
    check_event,
    metadata_problem,
    shown,
)
from ingest_gateway.idempotency import idempotency_key, ingest_event_ids
from ingest_gateway.responses import JSON
from ingest_gateway.state import state_of
from schemas import ALIAS_KINDS, AliasKind, LeadEvent, encode
from schemas.topics import partition_key

EVENTS_LIMIT: Final = 1000
"""Events in one request."""
METADATA_LIMIT: Final = 100 * 1024
"""Bytes of one event's metadata, encoded as JSON."""
BODY_LIMIT: Final = 10 * 1024 * 1024
"""Bytes of the request body."""

_KINDS: Final = ", ".join(ALIAS_KINDS)


class AliasIn(msgspec.Struct):
    kind: AliasKind
    value: str


class EventIn(msgspec.Struct):
    """One event of the body, as JSON gives it (unknown fields are ignored)."""

    lead_id: str | None = None
    aliases: Annotated[list[AliasIn], msgspec.Meta(max_length=MAX_ALIASES)] | None = None
    event_type: str | None = None
    timestamp: str | None = None
    metadata: dict[str, Any] | None = None


class BatchIn(msgspec.Struct):
    events: Annotated[list[EventIn], msgspec.Meta(min_length=1, max_length=EVENTS_LIMIT)]


_DECODE_EVENT: Final = msgspec.json.Decoder(EventIn)
_DECODE_BATCH: Final = msgspec.json.Decoder(BatchIn)


def _typed(body: bytes) -> list[EventIn] | None:
    """The body's events when it fits the types; None when it must be read the slow way."""
    try:
        if b'"events"' in body:
            return _DECODE_BATCH.decode(body).events
        return [_DECODE_EVENT.decode(body)]
    except (msgspec.DecodeError, RecursionError):
        return None


def _events_of(body: Any) -> list[Any]:
    if not (isinstance(body, dict) and "events" in body):
        return [body]
    events = body["events"]
    if not isinstance(events, list) or not events:
        raise BadRequest(f"events: a list of 1 to {EVENTS_LIMIT} events.", code="invalid_events")
    if len(events) > EVENTS_LIMIT:
        raise PayloadTooLarge(
            f"events: {len(events)} events; send at most {EVENTS_LIMIT} per request.",
            code="too_many_events",
        )
    return events


def _aliases(raw: Any) -> list[tuple[AliasKind, str]] | str:
    if raw is None:
        return []
    if not isinstance(raw, list):
        return 'aliases: must be a list of {"kind": ..., "value": ...}'
    if len(raw) > MAX_ALIASES:
        return f"aliases: {len(raw)} aliases; an event has at most {MAX_ALIASES}"
    aliases: list[tuple[AliasKind, str]] = []
    for index, alias in enumerate(raw):
        if not isinstance(alias, dict):
            return f'aliases[{index}]: must be an object {{"kind": ..., "value": ...}}'
        kind, value = alias.get("kind"), alias.get("value")
        if kind not in ALIAS_KINDS:
            return f"aliases[{index}].kind: must be one of {_KINDS}; got {shown(str(kind))}"
        if not isinstance(value, str):
            return f"aliases[{index}].value: must be a string"
        aliases.append((kind, value))
    return aliases


def _check(
    item: Any, index: int, default_time: datetime
) -> tuple[CheckedEvent, dict[str, Any]] | str:
    """The event and its metadata, or why it is invalid; 413 if its metadata is too large."""
    if not isinstance(item, dict):
        return "an event must be a JSON object"
    for name in ("lead_id", "event_type", "timestamp"):
        if item.get(name) is not None and not isinstance(item[name], str):
            return f"{name}: must be a string"
    aliases = _aliases(item.get("aliases"))
    if isinstance(aliases, str):
        return aliases
    metadata = item.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        return "metadata: must be a JSON object"
    elif problem := _metadata_problem(metadata, index):
        return problem
    checked = check_event(
        item.get("lead_id") or "",
        aliases,
        item.get("event_type") or "",
        item.get("timestamp") or "",
        default_time=default_time,
    )
    if isinstance(checked, str):
        return checked
    return checked, metadata


def _metadata_problem(metadata: dict[str, Any], index: int) -> str | None:
    """Why the metadata cannot be stored, or None; 413 if it is too large."""
    if not metadata:
        return None
    encoded = msgspec.json.encode(metadata)
    if len(encoded) > METADATA_LIMIT:
        raise PayloadTooLarge(
            f"events[{index}].metadata: {len(encoded)} bytes, over the limit of 100 KB "
            f"({METADATA_LIMIT} bytes).",
            code="metadata_too_large",
        )
    # JSON escapes every control character: without a backslash there is none.
    if b"\\" in encoded:
        return metadata_problem(metadata)
    return None


def _check_typed(
    event: EventIn, index: int, default_time: datetime
) -> tuple[CheckedEvent, dict[str, Any]] | str:
    """:func:`_check` of an event the decoder typed already."""
    metadata = event.metadata if event.metadata is not None else {}
    if problem := _metadata_problem(metadata, index):
        return problem
    checked = check_event(
        event.lead_id or "",
        [(alias.kind, alias.value) for alias in event.aliases or ()],
        event.event_type or "",
        event.timestamp or "",
        default_time=default_time,
    )
    if isinstance(checked, str):
        return checked
    return checked, metadata


async def post_ingest(request: Request) -> JSON:
    """POST /ingest: publish the events (source "api"); 202 with their ids, in order."""
    principal = await require_principal(request)
    state = state_of(request)
    key = idempotency_key(request)
    body = await read_json_bytes(request, limit=BODY_LIMIT)
    received_at = datetime.now(UTC)
    valid: list[tuple[CheckedEvent, dict[str, Any]]] = []
    invalid: list[dict[str, object]] = []
    typed = _typed(body)
    items: list[Any] = typed if typed is not None else _events_of(decode_json(body))
    for index, item in enumerate(items):
        if typed is not None:
            result = _check_typed(item, index, received_at)
        else:
            result = _check(item, index, received_at)
        if isinstance(result, str):
            invalid.append({"index": index, "error": result})
        else:
            valid.append(result)
    if invalid:
        first = invalid[0]
        raise BadRequest(
            f"{len(invalid)} of {len(items)} events are invalid, so none was accepted; "
            f"events[{first['index']}]: {first['error']}.",
            code="invalid_events",
            errors=invalid,
        )
    event_ids = ingest_event_ids(principal.unit_id, key, len(valid))
    records = []
    unit_key = partition_key(principal.unit_id)
    for event_id, (checked, metadata) in zip(event_ids, valid, strict=True):
        event = LeadEvent(
            event_id=event_id,
            unit_id=principal.unit_id,
            lead_id=checked.lead_id,
            aliases=checked.aliases,
            event_type=checked.event_type,
            timestamp=checked.timestamp,
            source="api",
            metadata=metadata,
        )
        records.append((unit_key, encode(event)))
    await state.live.publish(records)
    return JSON({"accepted": len(records), "event_ids": event_ids}, status_code=202)


ROUTES: list[Route] = [Route("/ingest", post_ingest, methods=["POST"])]
