"""What one batch changes: resolved and scored events in, rows and scored records out.

Pure functions: :func:`plan` turns a batch's events, their resolved leads and the rule
book into the rows every projection receives; :meth:`Plan.finish` takes the leads'
scores after the batch (which only the database knows, since other scorers may add to
the same lead) and gives each event its score before and after, its events row and the
``scored`` record to publish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from schemas import ConflictingAlias, LeadEvent, ScoredEvent
from scorer.resolution import Resolved
from scorer.scoring import RuleBook, Score
from scorer.store import AliasClaim, ConflictRow, EventRow, LeadDelta, LeadTotal

LeadKey = tuple[str, str]
"""(unit_id, lead_id)."""

_json = msgspec.json.Encoder()


class Applying(NamedTuple):
    """An event on its way into the projections."""

    event: LeadEvent
    timestamp: datetime
    """The event's timestamp, in UTC if it came without an offset."""
    resolved: Resolved
    score: Score
    lead: LeadKey


_new = tuple.__new__
"""Makes a NamedTuple from a tuple of its fields, without the Python call of its __new__."""


@dataclass
class Plan:
    """The rows a batch writes, apart from those that need the leads' new scores."""

    applying: list[Applying] = field(default_factory=list)
    unresolved: list[int] = field(default_factory=list)
    """Positions of the events that name neither a lead id nor a usable alias."""
    claims: list[AliasClaim] = field(default_factory=list)
    conflicts: list[ConflictRow] = field(default_factory=list)
    lead_deltas: dict[LeadKey, LeadDelta] = field(default_factory=dict)
    ruleset_deltas: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """Points per (unit_id, lead_id, ruleset_id)."""
    imports: dict[tuple[str, str], int] = field(default_factory=dict)
    """Events applied per (unit_id, import_id)."""

    def finish(
        self, totals: Mapping[LeadKey, LeadTotal]
    ) -> tuple[list[EventRow], list[ScoredEvent]]:
        """The events rows and scored records, given each lead's score after the batch.

        The batch's events are applied in order, so an event's score before is the lead's
        score before the batch plus the points of its earlier events in the batch.
        """
        running = {key: totals[key].score - delta.points for key, delta in self.lead_deltas.items()}
        created = {key for key, total in totals.items() if total.created}
        rows: list[EventRow] = []
        scored: list[ScoredEvent] = []
        add_row, add_scored = rows.append, scored.append
        for event, timestamp, resolved, score, key in self.applying:
            lead_id = resolved[0]
            points = score.total
            before = running[key]
            after = running[key] = before + points
            lead_created = False
            if created and key in created:
                created.discard(key)  # the lead's first event in the batch created it
                lead_created = True
            metadata = event.metadata
            add_row(
                _new(
                    EventRow,
                    (
                        key[0],
                        event.event_id,
                        lead_id,
                        event.event_type,
                        timestamp,
                        event.source,
                        event.skip_triggers,
                        event.import_id,
                        event.row,
                        points,
                        after,
                        _json.encode(metadata).decode() if metadata else "{}",
                    ),
                )
            )
            add_scored(
                ScoredEvent(
                    event_id=event.event_id,
                    unit_id=key[0],
                    lead_id=lead_id,
                    event_type=event.event_type,
                    timestamp=timestamp,
                    points=points,
                    score_before=before,
                    score_after=after,
                    skip_triggers=event.skip_triggers,
                    source=event.source,
                    import_id=event.import_id,
                    row=event.row,
                    lead_created=lead_created,
                    aliases_attached=resolved[2],
                    alias_conflicts=_conflicts(resolved) if resolved[3] else (),
                )
            )
        return rows, scored


def _conflicts(resolved: Resolved) -> tuple[ConflictingAlias, ...]:
    return tuple(ConflictingAlias(c.alias, c.owner_lead_id) for c in resolved.conflicts)


def plan(events: Sequence[LeadEvent], resolved: Sequence[Resolved | None], book: RuleBook) -> Plan:
    """What applying ``events`` (resolved to ``resolved``, in order) changes."""
    result = Plan()
    add_applying, claims, conflicts = result.applying.append, result.claims, result.conflicts
    ruleset_deltas, imports = result.ruleset_deltas, result.imports
    score_of = book.score
    sums: dict[LeadKey, list[Any]] = {}
    """[points, events, first timestamp, last timestamp] per lead."""
    for position, (event, lead) in enumerate(zip(events, resolved, strict=True)):
        if lead is None:
            result.unresolved.append(position)
            continue
        timestamp = event.timestamp
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        unit_id, lead_id = event.unit_id, lead[0]
        score = score_of(unit_id, event.event_type, timestamp)
        key = (unit_id, lead_id)
        add_applying(_new(Applying, (event, timestamp, lead, score, key)))
        lead_sum = sums.get(key)
        if lead_sum is None:
            sums[key] = [score.total, 1, timestamp, timestamp]
        else:
            lead_sum[0] += score.total
            lead_sum[1] += 1
            if timestamp < lead_sum[2]:
                lead_sum[2] = timestamp
            elif timestamp > lead_sum[3]:
                lead_sum[3] = timestamp
        for ruleset_id, points in score.by_ruleset:
            key3 = (unit_id, lead_id, ruleset_id)
            ruleset_deltas[key3] = ruleset_deltas.get(key3, 0) + points
        if lead[2]:
            event_id = event.event_id
            for alias in lead[2]:
                claims.append(AliasClaim(unit_id, alias.kind, alias.value, lead_id, event_id))
        for conflict in lead[3]:
            alias = conflict.alias
            conflicts.append(
                ConflictRow(
                    unit_id,
                    event.event_id,
                    alias.kind,
                    alias.value,
                    conflict.owner_lead_id,
                    lead_id,
                )
            )
        if event.import_id is not None:
            key2 = (unit_id, event.import_id)
            imports[key2] = imports.get(key2, 0) + 1
    result.lead_deltas = {
        key: _new(LeadDelta, (key[0], key[1], *lead_sum)) for key, lead_sum in sums.items()
    }
    return result
