"""What one batch changes: resolved events and the leads as they stand in, rows out.

A pure function over plain values: :func:`score_batch` applies a batch's resolved events,
in order, to the leads held in memory (:class:`scorer.state.Lead`, changed in place) and
returns what the write-behind flush needs: the events rows, the ``scored`` records to
publish, which leads and per-ruleset scores changed, the aliases claimed, the conflicts
and the import progress. Each event's score before and after is the lead's running score,
so nothing has to be read back from the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import msgspec

from schemas import ConflictingAlias, LeadEvent, ScoredEvent
from scorer.resolution import Resolved
from scorer.scoring import RuleBook
from scorer.state import Lead, LeadKey
from scorer.store import AliasClaim, ConflictRow

_json = msgspec.json.Encoder()


@dataclass
class Changes:
    """What a batch writes and publishes."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    """The events rows, in the columns of :data:`scorer.store.EVENT_COLUMNS`."""
    scored: list[ScoredEvent] = field(default_factory=list)
    unresolved: list[int] = field(default_factory=list)
    """Positions of the events that name neither a lead id nor a usable alias."""
    leads: dict[LeadKey, int | None] = field(default_factory=dict)
    """Each lead changed, with its event count before the batch (None: the batch creates
    it). The count is the optimistic check of the flush: a lead whose row moved meanwhile
    was written by someone else."""
    ruleset_scores: dict[tuple[str, str, str], None] = field(default_factory=dict)
    """The (unit_id, lead_id, ruleset_id) whose per-ruleset score changed, in order."""
    claims: list[AliasClaim] = field(default_factory=list)
    conflicts: list[ConflictRow] = field(default_factory=list)
    imports: dict[tuple[str, str], int] = field(default_factory=dict)
    """Events applied per (unit_id, import_id)."""


def score_batch(
    events: Sequence[LeadEvent],
    resolved: Sequence[Resolved | None],
    book: RuleBook,
    leads: Mapping[LeadKey, Lead],
) -> Changes:
    """Apply ``events`` (resolved to ``resolved``, in order) to ``leads``, which holds every
    lead they resolve to and is changed in place; return what to write and publish."""
    changes = Changes()
    add_row, add_scored = changes.rows.append, changes.scored.append
    changed, ruleset_scores = changes.leads, changes.ruleset_scores
    claims, conflicts, imports = changes.claims, changes.conflicts, changes.imports
    score_of = book.score
    for position, (event, lead) in enumerate(zip(events, resolved, strict=True)):
        if lead is None:
            changes.unresolved.append(position)
            continue
        timestamp = event.timestamp
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        unit_id, lead_id = event.unit_id, lead[0]
        key = (unit_id, lead_id)
        state = leads[key]
        score = score_of(unit_id, event.event_type, timestamp)
        points = score.total
        before = state.score
        after = state.score = before + points
        created = False
        if key not in changed:
            if state.stored:
                changed[key] = state.event_count
            else:
                changed[key] = None
                created = True  # the lead's first event creates it
        state.event_count += 1
        first = state.first_event_at
        if first is None or timestamp < first:
            state.first_event_at = timestamp
        last = state.last_event_at
        if last is None or timestamp > last:
            state.last_event_at = timestamp
        if score.by_ruleset:
            by_ruleset = state.by_ruleset
            for ruleset_id, ruleset_points in score.by_ruleset:
                by_ruleset[ruleset_id] = by_ruleset.get(ruleset_id, 0) + ruleset_points
                ruleset_scores[(unit_id, lead_id, ruleset_id)] = None
        event_id = event.event_id
        if lead[2]:
            for alias in lead[2]:
                claims.append(AliasClaim(unit_id, alias.kind, alias.value, lead_id, event_id))
        if lead[3]:
            for conflict in lead[3]:
                alias = conflict.alias
                conflicts.append(
                    ConflictRow(
                        unit_id, event_id, alias.kind, alias.value, conflict.owner_lead_id, lead_id
                    )
                )
        import_id = event.import_id
        if import_id is not None:
            key2 = (unit_id, import_id)
            imports[key2] = imports.get(key2, 0) + 1
        metadata = event.metadata
        add_row(
            (
                unit_id,
                event_id,
                lead_id,
                event.event_type,
                timestamp,
                event.source,
                event.skip_triggers,
                import_id,
                event.row,
                points,
                after,
                _json.encode(metadata).decode() if metadata else "{}",
            )
        )
        add_scored(
            ScoredEvent(
                event_id=event_id,
                unit_id=unit_id,
                lead_id=lead_id,
                event_type=event.event_type,
                timestamp=timestamp,
                points=points,
                score_before=before,
                score_after=after,
                skip_triggers=event.skip_triggers,
                source=event.source,
                import_id=import_id,
                row=event.row,
                lead_created=created,
                aliases_attached=lead[2],
                alias_conflicts=_conflicts(lead) if lead[3] else (),
            )
        )
    return changes


def _conflicts(resolved: Resolved) -> tuple[ConflictingAlias, ...]:
    return tuple(ConflictingAlias(c.alias, c.owner_lead_id) for c in resolved.conflicts)
