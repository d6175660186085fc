"""Versioned event records.

Every record is a frozen msgspec Struct with a ``version`` field. A newer producer may add
fields: decoders ignore fields they do not know, so old consumers keep working. A field is
never removed or retyped within a version; such a change is a new version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

import msgspec

AliasKind = Literal["external_id", "email", "phone", "social", "cookie"]

ALIAS_KINDS: Final[tuple[AliasKind, ...]] = ("external_id", "email", "phone", "social", "cookie")
"""Alias kinds in priority order, highest first (DESIGN.md decision 6)."""

Source = Literal["import", "api"]


class Alias(msgspec.Struct, frozen=True):
    """One identifier of a lead in another system, as sent (normalised by the scorer)."""

    kind: AliasKind
    value: str


class LeadEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An engagement event about one lead, on topic ``leadvibe.events``.

    ``event_id`` is unique within the unit: the scorer counts an event id once, however
    often it is published. ``import_id`` and ``row`` are set for imported events only
    (``row`` as a spreadsheet numbers it, the header being row 1).
    """

    version: int = 1
    event_id: str
    unit_id: str
    lead_id: str | None = None
    aliases: tuple[Alias, ...] = ()
    event_type: str
    timestamp: datetime
    source: Source
    skip_triggers: bool = False
    import_id: str | None = None
    row: int | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class ConflictingAlias(msgspec.Struct, frozen=True):
    """An alias an event named that another lead owns: it stayed with ``owner_lead_id``."""

    alias: Alias
    owner_lead_id: str


class ScoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What the scorer did with one event, on topic ``leadvibe.scored``.

    ``lead_created``, ``aliases_attached`` and ``alias_conflicts`` record the identity
    decisions the scorer took, so that a replay rebuilds the same leads instead of deciding
    again. ``replay`` is true for records produced by a replay or rescore: no trigger fires
    on them. Of several records for one event, the latest counts: a replay's record for an
    event carries the decisions of the record it supersedes, with the event's new points.
    """

    version: int = 1
    event_id: str
    unit_id: str
    lead_id: str
    event_type: str
    timestamp: datetime
    points: int
    score_before: int
    score_after: int
    skip_triggers: bool
    source: Source
    replay: bool = False
    import_id: str | None = None
    row: int | None = None
    lead_created: bool = False
    aliases_attached: tuple[Alias, ...] = ()
    alias_conflicts: tuple[ConflictingAlias, ...] | None = None
    """Aliases the event named that other leads own (each stayed with its owner); None in
    the records of scorers older than this field, which did not say."""


class TriggerFired(msgspec.Struct, frozen=True, kw_only=True):
    """A milestone trigger fired for one lead because of one event."""

    version: int = 1
    firing_id: str
    trigger_id: str
    unit_id: str
    lead_id: str
    event_id: str
    event_type: str
    score_before: int
    score_after: int
    fired_at: datetime


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A record a consumer could not process, kept with where it came from and why.

    A letter always fits in a Kafka request: a value too large for that is kept cut to
    its first bytes (``value_truncated``), with the whole value's size and SHA-256 digest;
    the whole record stays at ``topic``/``partition``/``offset``. The last three fields
    are None/false in the letters of consumers older than them.
    """

    version: int = 1
    consumer_group: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    failed_at: datetime
    value_size: int | None = None
    """The record's value's size in bytes (None when it has no value)."""
    value_sha256: str | None = None
    """The hex SHA-256 digest of the record's whole value."""
    value_truncated: bool = False
    """Whether ``value`` holds only the first bytes of the record's value."""
