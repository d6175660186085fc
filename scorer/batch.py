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
from typing import NamedTuple

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
        for item in self.applying:
            event, lead_id = item.event, item.resolved.lead_id
            key = (event.unit_id, lead_id)
            before = running[key]
            after = running[key] = before + item.score.total
            lead_created = key in created
            if lead_created:
                created.discard(key)  # the lead's first event in the batch created it
            rows.append(
                EventRow(
                    event.unit_id,
                    event.event_id,
                    lead_id,
                    event.event_type,
                    item.timestamp,
                    event.source,
                    event.skip_triggers,
                    event.import_id,
                    event.row,
                    item.score.total,
                    after,
                    _json.encode(event.metadata).decode() if event.metadata else "{}",
                )
            )
            scored.append(
                ScoredEvent(
                    event_id=event.event_id,
                    unit_id=event.unit_id,
                    lead_id=lead_id,
                    event_type=event.event_type,
                    timestamp=item.timestamp,
                    points=item.score.total,
                    score_before=before,
                    score_after=after,
                    skip_triggers=event.skip_triggers,
                    source=event.source,
                    import_id=event.import_id,
                    row=event.row,
                    lead_created=lead_created,
                    aliases_attached=item.resolved.attached,
                    alias_conflicts=_conflicts(item.resolved) if item.resolved.conflicts else (),
                )
            )
        return rows, scored


def _conflicts(resolved: Resolved) -> tuple[ConflictingAlias, ...]:
    return tuple(ConflictingAlias(c.alias, c.owner_lead_id) for c in resolved.conflicts)


@dataclass(slots=True)
class _LeadSum:
    points: int
    events: int
    first: datetime
    last: datetime

    def add(self, points: int, at: datetime) -> None:
        self.points += points
        self.events += 1
        if at < self.first:
            self.first = at
        elif at > self.last:
            self.last = at


def plan(events: Sequence[LeadEvent], resolved: Sequence[Resolved | None], book: RuleBook) -> Plan:
    """What applying ``events`` (resolved to ``resolved``, in order) changes."""
    result = Plan()
    applying, claims, conflicts = result.applying, result.claims, result.conflicts
    ruleset_deltas, imports = result.ruleset_deltas, result.imports
    sums: dict[LeadKey, _LeadSum] = {}
    for position, (event, lead) in enumerate(zip(events, resolved, strict=True)):
        if lead is None:
            result.unresolved.append(position)
            continue
        timestamp = event.timestamp
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        unit_id, lead_id = event.unit_id, lead.lead_id
        score = book.score(unit_id, event.event_type, timestamp)
        applying.append(Applying(event, timestamp, lead, score))
        lead_sum = sums.get((unit_id, lead_id))
        if lead_sum is None:
            sums[(unit_id, lead_id)] = _LeadSum(score.total, 1, timestamp, timestamp)
        else:
            lead_sum.add(score.total, timestamp)
        for ruleset_id, points in score.by_ruleset:
            key = (unit_id, lead_id, ruleset_id)
            ruleset_deltas[key] = ruleset_deltas.get(key, 0) + points
        if lead.attached:
            event_id = event.event_id
            for alias in lead.attached:
                claims.append(AliasClaim(unit_id, alias.kind, alias.value, lead_id, event_id))
        for conflict in lead.conflicts:
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
        key: LeadDelta(key[0], key[1], s.points, s.events, s.first, s.last)
        for key, s in sums.items()
    }
    return result
