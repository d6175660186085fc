"""The Idempotency-Key header and the ids that derive from it (DESIGN.md decision 3).

The same key from the same unit gives the same import id and the same event ids, so a
request retried after a 503 or a dropped connection publishes events under ids the scorer
has already counted, if it has: nothing is counted twice. Without a key, ids are random.
An import's event ids carry its stored creation time, so that they sort by upload and the
events table's key appends (the retry reuses the stored time, never the clock).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from starlette.requests import Request

from ingest_gateway.errors import BadRequest
from schemas.ids import derived_id, derived_ids, ordered_ids, sortable_id

KEY_LIMIT: Final = 255

ORDERED: Final = "ordered"
"""The form of an import's event ids (``imports.event_ids``): sortable, by row."""
UUID5: Final = "uuid5"
"""The form of the event ids of an import recorded before migration 0008: a uuid5 each."""


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (trimmed), None without one; 400 if malformed."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > KEY_LIMIT or not key.isascii() or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key: 1 to {KEY_LIMIT} printable ASCII characters, such as a UUID.",
            code="invalid_idempotency_key",
        )
    return key


def import_id_of(unit_id: str, key: str | None) -> str:
    """``imp_`` + derived from (unit, key); random (and sortable) without a key."""
    return "imp_" + derived_id(unit_id, key) if key is not None else sortable_id("imp_")


def import_event_ids(
    unit_id: str, import_id: str, key: str | None, created_at: datetime, *, form: str = ORDERED
) -> Callable[[int], str]:
    """Spreadsheet row number → the id of that row's event.

    ``ev_`` + a sortable id (:func:`schemas.ids.ordered_ids`): the import's stored creation
    time ``created_at``, the row number, and a hash of (unit, key), or, without a key, of
    (unit, import id, "row"). A retry reuses the import's row and so its creation time:
    the same key gives the same ids. Ids sort by import, then row, so the events table's
    key grows at its right edge.

    ``form="uuid5"`` is for an import recorded before ids took this form (migration 0008):
    ``derived_id(unit, key, row)``, or ``derived_id(unit, import_id, "row", row)``.
    """
    if form == UUID5:
        derive = (
            derived_ids(unit_id, key) if key is not None else derived_ids(unit_id, import_id, "row")
        )
        return lambda row: derive(str(row))
    millis = int(created_at.timestamp() * 1000)
    parts = (unit_id, key) if key is not None else (unit_id, import_id, "row")
    return ordered_ids("ev_", millis, *parts)


_CROCKFORD: Final = "0123456789abcdefghjkmnpqrstvwxyz"
POSITIONS: Final = 32 * 32
"""Events one request's sortable ids can tell apart: its last two characters."""


def ingest_event_ids(unit_id: str, key: str | None, count: int) -> list[str]:
    """Ids of the events of one POST /ingest, in order: derived from (unit, key, position).

    Without a key, one sortable id of the request with its last two characters (10 of its 80
    random bits) replaced by the event's position: as sortable, 70 random bits per request,
    and a fraction of the cost of a random id per event.
    """
    if key is None:
        if count > POSITIONS:
            return [sortable_id("ev_") for _ in range(count)]
        stem = sortable_id("ev_")[:-2]
        return [stem + _CROCKFORD[n >> 5] + _CROCKFORD[n & 31] for n in range(count)]
    derive = derived_ids(unit_id, key, "ingest")
    return [derive(str(position)) for position in range(count)]
