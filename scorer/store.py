"""The scorer's SQL: every statement reads or writes a whole batch at once.

Rows go in as parallel arrays through ``unnest``, one statement per table per batch,
never a statement per event. Writes that two scorers may race on insert their rows in
key order, so that two batches touching the same rows lock them in the same order and do
not deadlock; where a race is possible the write reports how many rows it took, and the
caller resolves its batch again when another scorer got there first.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import asyncpg

from leadvibe.db import Connection, columns
from scorer.resolution import AliasKey
from scorer.scoring import Ruleset
from scorer.state import Lead, LeadKey, UnitVersion

EVENT_COLUMNS = (
    "unit_id", "event_id", "lead_id", "event_type", "occurred_at", "source", "skip_triggers",
    "import_id", "import_row", "points", "score_after", "metadata",
)  # fmt: skip
"""The columns of an events row as the scorer writes it (``metadata`` as JSON text)."""


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


async def unit_versions(conn: Connection, unit_ids: Collection[str]) -> dict[str, UnitVersion]:
    """The units among ``unit_ids`` that exist, with what tells whether the scorer's state
    of each is current: its projections' generation and a version of its rulesets.

    The rulesets' version is their count and the sum of their rows' ``xmin`` (the id of
    the transaction that last wrote each): creating, changing (``PUT`` rewrites the row)
    or deleting one changes it, whatever the clocks of the transactions say.
    """
    rows = await conn.fetch(
        """SELECT u.unit_id, coalesce(g.generation, 0) AS generation,
                  (SELECT count(*) || ':' || coalesce(sum(s.xmin::text::bigint), 0)
                   FROM rulesets AS s WHERE s.unit_id = u.unit_id) AS rules
           FROM org_units AS u LEFT JOIN projection_generations AS g USING (unit_id)
           WHERE u.unit_id = ANY($1::text[])""",
        list(unit_ids),
    )
    return {r[0]: UnitVersion(r[1], r[2]) for r in rows}


async def bump_generations(conn: Connection, unit_ids: Sequence[str]) -> None:
    """Tell the scorers that the units' projections were rewritten behind them: each drops
    what it holds of them before its next batch of theirs (:mod:`scorer.state`).

    Call it in the transaction that rewrites them, which must hold the scorer's offset
    locks (as the replay's switch does) or the scorer's next batch may not see it."""
    await conn.execute(
        """INSERT INTO projection_generations AS g (unit_id, generation)
           SELECT u, 1 FROM unnest($1::text[]) AS u ORDER BY 1
           ON CONFLICT (unit_id) DO UPDATE SET generation = g.generation + 1""",
        list(unit_ids),
    )


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


async def insert_events(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> bool:
    """Insert events not applied yet (binary COPY, the fastest way in); False if one was.

    The caller read which events were applied already; False means another scorer
    applied one of them since (the primary key refused it), and nothing was inserted.
    Call it inside a savepoint: the failed COPY aborts the transaction up to there.
    """
    if not rows:
        return True
    try:
        await conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)
    except asyncpg.UniqueViolationError:
        return False
    return True


async def load_leads(conn: Connection, keys: Collection[LeadKey]) -> dict[LeadKey, Lead]:
    """The stored leads among ``keys`` (unit_id, lead_id), with their per-ruleset scores."""
    if not keys:
        return {}
    unit_ids, lead_ids = columns(list(keys), 2)
    rows = await conn.fetch(
        """SELECT l.unit_id, l.lead_id, l.score, l.event_count, l.first_event_at,
                  l.last_event_at, s.ruleset_ids, s.scores
           FROM unnest($1::text[], $2::text[]) AS k (unit_id, lead_id)
           JOIN leads AS l USING (unit_id, lead_id)
           LEFT JOIN LATERAL (
               SELECT array_agg(r.ruleset_id) AS ruleset_ids, array_agg(r.score) AS scores
               FROM lead_ruleset_scores AS r
               WHERE r.unit_id = l.unit_id AND r.lead_id = l.lead_id) AS s ON true""",
        unit_ids,
        lead_ids,
    )
    return {
        (r[0], r[1]): Lead(
            r[2], r[3], r[4], r[5], dict(zip(r[6], r[7], strict=True)) if r[6] else {}, True
        )
        for r in rows
    }


async def write_leads(
    conn: Connection, changed: Mapping[LeadKey, int | None], leads: Mapping[LeadKey, Lead]
) -> bool:
    """Write the ``changed`` leads as ``leads`` holds them; False if one of them was
    written by someone else since it was read (nothing is then to be trusted).

    ``changed`` gives each lead's event count when read (None: a lead not stored yet). A
    stored lead is updated only if its count is still that one, a new one inserted only
    if still absent: the check that makes a scorer with a stale state (another scorer
    wrote the lead) roll back instead of overwriting.
    """
    new = [k for k, was in changed.items() if was is None]
    stored = [k for k, was in changed.items() if was is not None]
    if new:
        new.sort()
        status = await conn.execute(
            """INSERT INTO leads (unit_id, lead_id, score, event_count, first_event_at,
                                  last_event_at)
               SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                    $5::timestamptz[], $6::timestamptz[])
               ON CONFLICT DO NOTHING""",
            *_lead_columns(new, leads),
        )
        if _count(status) < len(new):
            return False
        for key in new:
            leads[key].stored = True
    if stored:
        stored.sort()
        status = await conn.execute(
            """UPDATE leads AS l
               SET score = n.score, event_count = n.event_count,
                   first_event_at = n.first_event_at, last_event_at = n.last_event_at,
                   updated_at = now()
               FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                           $5::timestamptz[], $6::timestamptz[], $7::bigint[])
                    AS n (unit_id, lead_id, score, event_count, first_event_at,
                          last_event_at, was)
               WHERE l.unit_id = n.unit_id AND l.lead_id = n.lead_id
                 AND l.event_count = n.was""",
            *_lead_columns(stored, leads),
            [changed[k] for k in stored],
        )
        if _count(status) < len(stored):
            return False
    return True


def _lead_columns(keys: Sequence[LeadKey], leads: Mapping[LeadKey, Lead]) -> list[list[Any]]:
    held = [leads[k] for k in keys]
    return [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [lead.score for lead in held],
        [lead.event_count for lead in held],
        [lead.first_event_at for lead in held],
        [lead.last_event_at for lead in held],
    ]


async def write_ruleset_scores(
    conn: Connection, changed: Iterable[tuple[str, str, str]], leads: Mapping[LeadKey, Lead]
) -> None:
    """Write the per-ruleset scores ``changed`` (unit_id, lead_id, ruleset_id) as held."""
    keys = sorted(changed)
    if not keys:
        return
    await conn.execute(
        """INSERT INTO lead_ruleset_scores AS s (unit_id, lead_id, ruleset_id, score)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
           ON CONFLICT (unit_id, lead_id, ruleset_id) DO UPDATE SET score = EXCLUDED.score""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [leads[(k[0], k[1])].by_ruleset[k[2]] for k in keys],
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
