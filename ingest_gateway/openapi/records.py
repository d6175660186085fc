"""The bodies the gateway takes and answers, as msgspec records: the document's schemas.

They describe, they do not parse: the endpoints read their bodies by hand (for their
400s), and these records say what those readers accept and what the endpoints answer.
A field whose default is ``UNSET`` may be absent; ``X | None`` may be null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ingest_gateway.events import MAX_ALIASES, MAX_EVENT_TYPE, MAX_IDENTIFIER
from schemas import AliasKind

NO_CONTROL: Final = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
"""Text without a control character (``ingest_gateway.text``)."""
NOT_BLANK: Final = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f]"
    "[^\\u0000-\\u001f\\u007f-\\u009f]*$"
)
"""Text without a control character, and not only spaces."""

Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=NOT_BLANK)]
EventType = Annotated[str, Meta(min_length=1, max_length=MAX_EVENT_TYPE, pattern=NOT_BLANK)]
Identifier = Annotated[str, Meta(max_length=MAX_IDENTIFIER, pattern=NO_CONTROL)]
Timestamp = Annotated[
    str,
    Meta(
        description="RFC 3339, with Z or a UTC offset",
        examples=["2025-06-15T10:30:00Z"],
        extra_json_schema={"format": "date-time"},
    ),
]
Count = Annotated[int, Meta(ge=0)]


class Error(msgspec.Struct):
    """Every error: a code to branch on, and a sentence a person can act on."""

    error: str
    detail: str
    field: str | UnsetType = UNSET
    """The request body's field at fault (``invalid_field``)."""


class EventError(msgspec.Struct):
    index: Count
    error: str


class EventsError(msgspec.Struct):
    """``invalid_events``: every invalid event of the request, none of which was taken."""

    error: str
    detail: str
    errors: list[EventError] | UnsetType = UNSET


# --- health --------------------------------------------------------------------------


class Check(msgspec.Struct):
    ok: bool
    detail: str


class Health(msgspec.Struct):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Check]


class Live(msgspec.Struct):
    status: Literal["ok"]


# --- units ---------------------------------------------------------------------------


class OrgUnit(msgspec.Struct):
    unit_id: str
    name: str
    active: bool
    """The unit the token acts in."""
    created_at: datetime


class OrgUnits(msgspec.Struct):
    org_units: list[OrgUnit]
    active_unit_id: str


class NewOrgUnit(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class ActiveUnit(msgspec.Struct):
    unit_id: Annotated[str, Meta(min_length=1, pattern=NO_CONTROL)]


class ActiveUnitSet(msgspec.Struct):
    active_unit_id: str


# --- imports and live events ---------------------------------------------------------


class RowError(msgspec.Struct):
    row: Annotated[int, Meta(ge=1)]
    """The row as a spreadsheet numbers it (the header is row 1)."""
    error: str


class ImportAccepted(msgspec.Struct):
    imported: Count
    errors: Count
    import_id: str
    error_rows: list[RowError]
    """The first 100 row errors."""
    ignored_columns: list[str]
    ignored_columns_truncated: bool | UnsetType = UNSET


class ImportStatus(msgspec.Struct):
    import_id: str
    status: Literal["publishing", "completed", "failed"]
    skip_triggers: bool
    rows: Count
    imported: Count
    errors: Count
    error_rows: list[RowError]
    ignored_columns: list[str]
    applied: Count
    """Events of the import the scorer has applied: all of them when it equals imported."""
    last_applied_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    failure: str | None
    ignored_columns_truncated: bool | UnsetType = UNSET


class Alias(msgspec.Struct):
    kind: AliasKind
    value: Identifier


class LiveEvent(msgspec.Struct):
    """One event: ``lead_id`` and/or an alias that names its lead. Other fields are
    ignored."""

    event_type: EventType
    lead_id: Identifier | UnsetType | None = UNSET
    aliases: Annotated[list[Alias], Meta(max_length=MAX_ALIASES)] | UnsetType | None = UNSET
    timestamp: Timestamp | UnsetType | None = UNSET
    """When it happened (default: when received)."""
    metadata: dict[str, Any] | UnsetType | None = UNSET
    """Any JSON object of at most 100 KB."""


class LiveEvents(msgspec.Struct):
    events: Annotated[list[LiveEvent], Meta(min_length=1, max_length=1000)]


class IngestAccepted(msgspec.Struct):
    accepted: Count
    event_ids: list[str]
    """In the order sent."""


# --- the read API --------------------------------------------------------------------


class StoredAlias(msgspec.Struct):
    kind: AliasKind
    value: str


class Lead(msgspec.Struct):
    lead_id: str
    score: int
    engagement_scores: dict[str, int]
    """Points by ruleset id."""
    aliases: list[StoredAlias]
    event_count: Count
    first_event_at: datetime | None
    last_event_at: datetime | None
    created_at: datetime


class Paged(msgspec.Struct):
    page: Annotated[int, Meta(ge=1)]
    limit: Annotated[int, Meta(ge=1, le=100)]
    next_page: int | None


class Leads(Paged):
    leads: list[Lead]


class AttachedAlias(msgspec.Struct):
    kind: AliasKind
    value: str
    attached_at: datetime
    attached_by_event_id: str


class LeadAliases(msgspec.Struct):
    lead_id: str
    aliases: list[AttachedAlias]


class Event(msgspec.Struct):
    event_id: str
    lead_id: str
    event_type: str
    timestamp: datetime
    source: str
    skip_triggers: bool
    import_id: str | None
    row: int | None
    points: int
    score_after: int
    metadata: dict[str, Any]
    scored_at: datetime


class Events(Paged):
    events: list[Event]


class AliasConflict(msgspec.Struct):
    event_id: str
    alias: StoredAlias
    owner_lead_id: str
    event_lead_id: str
    detected_at: datetime


class AliasConflicts(Paged):
    conflicts: list[AliasConflict]


# --- rulesets and triggers -----------------------------------------------------------


class Rule(msgspec.Struct, forbid_unknown_fields=True):
    event_type: Annotated[str, Meta(min_length=1, max_length=200, pattern=NOT_BLANK)]
    points: Annotated[int, Meta(ge=-(2**31 - 1), le=2**31 - 1)]


class RulesetBody(msgspec.Struct, forbid_unknown_fields=True):
    """A ruleset as sent; ``rules`` name each event type once."""

    name: Name
    rules: Annotated[list[Rule], Meta(max_length=1000)]
    active: bool = True
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    """After starts_at."""


class Ruleset(msgspec.Struct):
    id: str
    name: str
    active: bool
    starts_at: datetime | None
    ends_at: datetime | None
    rules: list[Rule]
    created_at: datetime
    updated_at: datetime


class Rulesets(msgspec.Struct):
    rulesets: list[Ruleset]


class TriggerBody(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    score_threshold: Annotated[int, Meta(ge=-(2**53 - 1), le=2**53 - 1)]
    fire_mode: Literal["once", "always"]
    webhook_url: Annotated[
        str, Meta(pattern="^https?://[^\\s]+$", extra_json_schema={"format": "uri"})
    ]
    """http or https; its host must resolve to a public address (unless the server allows
    private ones), checked here and at every delivery."""
    event_type: Annotated[str, Meta(min_length=1, max_length=200, pattern=NOT_BLANK)] | None = None
    """Only events of this type fire it (null: any)."""
    active: bool = True


class Trigger(msgspec.Struct):
    id: str
    name: str
    score_threshold: int
    event_type: str | None
    fire_mode: Literal["once", "always"]
    webhook_url: str
    active: bool
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None


class TriggerWithSecret(Trigger):
    signing_secret: str
    """Shown this once: keep it to check the webhooks' signatures."""


class Triggers(msgspec.Struct):
    triggers: list[Trigger]


class Attempt(msgspec.Struct):
    attempt: Annotated[int, Meta(ge=1)]
    started_at: datetime
    duration_ms: int | None
    status_code: int | None
    error: str | None


class Firing(msgspec.Struct):
    id: str
    lead_id: str
    event_id: str
    event_type: str
    event_timestamp: datetime
    score_threshold: int
    score_before: int
    score_after: int
    fired_at: datetime
    delivery_status: Literal["pending", "delivered", "failed"]
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    attempts: list[Attempt]


class Firings(Paged):
    firings: list[Firing]
