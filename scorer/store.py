"""The scorer's SQL: every statement reads or writes a whole batch at once.

Rows go in as parallel arrays through ``unnest``, one statement per table per batch,
never a statement per event. Writes that two scorers may race on insert their rows in
key order, so that two batches touching the same rows lock them in the same order and do
not deadlock; where a race is possible the write reports how many rows it took, and the
caller resolves its batch again when another scorer got there first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

from leadvibe.db import Connection, columns
from scorer.resolution import AliasKey
from scorer.scoring import Ruleset


class EventRow(NamedTuple):
    unit_id: str
    event_id: str
    lead_id: str
    event_type: str
    occurred_at: datetime
    source: str
    skip_triggers: bool
    import_id: str | None
    import_row: int | None
    points: int
    score_after: int
    metadata: str
    """The event's metadata as a JSON text."""


class LeadDelta(NamedTuple):
    """What one batch adds to one lead."""

    unit_id: str
    lead_id: str
    points: int
    events: int
    first_event_at: datetime
    last_event_at: datetime


class LeadTotal(NamedTuple):
    score: int
    """The lead's score after the batch."""
    created: bool
    """The batch created the lead."""


class AliasClaim(NamedTuple):
    unit_id: str
    kind: str
    value: str
    lead_id: str
    event_id: str


class ConflictRow(NamedTuple):
    unit_id: str
    event_id: str
    kind: str
    value: str
    owner_lead_id: str
    event_lead_id: str


async def existing_units(conn: Connection, unit_ids: Collection[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT unit_id FROM org_units WHERE unit_id = ANY($1::text[])", list(unit_ids)
    )
    return {r["unit_id"] for r in rows}


async def applied_events(conn: Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (unit_id, event_id) among ``keys`` already applied."""
    if not keys:
        return set()
    unit_ids, event_ids = columns(keys, 2)
    rows = await conn.fetch(
        """SELECT e.unit_id, e.event_id
           FROM unnest($1::text[], $2::text[]) AS k (unit_id, event_id)
           JOIN events AS e USING (unit_id, event_id)""",
        unit_ids,
        event_ids,
    )
    return {(r["unit_id"], r["event_id"]) for r in rows}


async def alias_owners(conn: Connection, keys: Collection[AliasKey]) -> dict[AliasKey, str]:
    """The lead owning each of ``keys`` that has an owner."""
    if not keys:
        return {}
    unit_ids, kinds, values = columns(list(keys), 3)
    rows = await conn.fetch(
        """SELECT a.unit_id, a.kind, a.value, a.lead_id
           FROM unnest($1::text[], $2::text[], $3::text[]) AS k (unit_id, kind, value)
           JOIN aliases AS a USING (unit_id, kind, value)""",
        unit_ids,
        kinds,
        values,
    )
    return {(r["unit_id"], r["kind"], r["value"]): r["lead_id"] for r in rows}


async def active_rulesets(conn: Connection, unit_ids: Collection[str]) -> list[Ruleset]:
    """The active rulesets of the units, with their rules, as they are now."""
    rows = await conn.fetch(
        """SELECT s.ruleset_id, s.unit_id, s.starts_at, s.ends_at,
                  array_agg(r.event_type) AS event_types, array_agg(r.points) AS points
           FROM rulesets AS s JOIN rules AS r USING (ruleset_id)
           WHERE s.unit_id = ANY($1::text[]) AND s.active
           GROUP BY s.ruleset_id""",
        list(unit_ids),
    )
    return [
        Ruleset(
            ruleset_id=r["ruleset_id"],
            unit_id=r["unit_id"],
            points=dict(zip(r["event_types"], r["points"], strict=True)),
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
        )
        for r in rows
    ]


def _count(status: str) -> int:
    """The row count of an ``INSERT 0 n`` status."""
    return int(status.rsplit(" ", 1)[1])


async def claim_aliases(conn: Connection, claims: Sequence[AliasClaim]) -> int:
    """Attach free aliases to leads; return how many were still free.

    Fewer than ``len(claims)`` means another scorer claimed one since it was read: this
    statement waited for that scorer's transaction and found its row.
    """
    if not claims:
        return 0
    status = await conn.execute(
        """INSERT INTO aliases (unit_id, kind, value, lead_id, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
           ORDER BY 1, 2, 3
           ON CONFLICT DO NOTHING""",
        *columns(claims, 5),
    )
    return _count(status)


_EVENT_COLUMNS = EventRow._fields


async def insert_events(conn: Connection, rows: Sequence[EventRow]) -> bool:
    """Insert events not applied yet (binary COPY, the fastest way in); False if one was.

    The caller read which events were applied already; False means another scorer
    applied one of them since (the primary key refused it), and nothing was inserted.
    Call it inside a savepoint: the failed COPY aborts the transaction up to there.
    """
    if not rows:
        return True
    try:
        await conn.copy_records_to_table("events", records=rows, columns=_EVENT_COLUMNS)
    except asyncpg.UniqueViolationError:
        return False
    return True


async def add_to_leads(
    conn: Connection, deltas: Sequence[LeadDelta]
) -> dict[tuple[str, str], LeadTotal]:
    """Create or update each lead; return its score after the batch and whether it is new."""
    if not deltas:
        return {}
    rows = await conn.fetch(
        """INSERT INTO leads AS l (unit_id, lead_id, score, event_count,
                                   first_event_at, last_event_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                $5::timestamptz[], $6::timestamptz[])
           ORDER BY 1, 2
           ON CONFLICT (unit_id, lead_id) DO UPDATE SET
               score = l.score + EXCLUDED.score,
               event_count = l.event_count + EXCLUDED.event_count,
               first_event_at = LEAST(l.first_event_at, EXCLUDED.first_event_at),
               last_event_at = GREATEST(l.last_event_at, EXCLUDED.last_event_at),
               updated_at = now()
           RETURNING unit_id, lead_id, score, xmax = 0 AS created""",
        *columns(deltas, 6),
    )
    return {(r[0], r[1]): LeadTotal(r[2], r[3]) for r in rows}


async def add_to_ruleset_scores(
    conn: Connection, deltas: Sequence[tuple[str, str, str, int]]
) -> None:
    """Add (unit_id, lead_id, ruleset_id, points) to each lead's per-ruleset score."""
    if not deltas:
        return
    await conn.execute(
        """INSERT INTO lead_ruleset_scores AS s (unit_id, lead_id, ruleset_id, score)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
           ORDER BY 1, 2, 3
           ON CONFLICT (unit_id, lead_id, ruleset_id) DO UPDATE
           SET score = s.score + EXCLUDED.score""",
        *columns(deltas, 4),
    )


async def record_conflicts(conn: Connection, conflicts: Sequence[ConflictRow]) -> None:
    if not conflicts:
        return
    await conn.execute(
        """INSERT INTO alias_conflicts (unit_id, event_id, kind, value, owner_lead_id,
                                        event_lead_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::text[])
           ON CONFLICT DO NOTHING""",
        *columns(conflicts, 6),
    )


async def add_import_progress(conn: Connection, applied: Sequence[tuple[str, str, int]]) -> None:
    """Add (unit_id, import_id, events applied now) to each import's progress."""
    if not applied:
        return
    await conn.execute(
        """INSERT INTO import_progress AS p (unit_id, import_id, applied, last_applied_at)
           SELECT unit_id, import_id, applied, now()
           FROM unnest($1::text[], $2::text[], $3::bigint[]) AS n (unit_id, import_id, applied)
           ORDER BY 1, 2
           ON CONFLICT (unit_id, import_id) DO UPDATE
           SET applied = p.applied + EXCLUDED.applied,
               last_applied_at = EXCLUDED.last_applied_at""",
        *columns(applied, 3),
    )
