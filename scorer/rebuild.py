"""The replay's SQL: staging tables, the projections rebuilt in them, the switch to them.

Everything is staged in temporary tables of the replay's own connection (``rp_*``): they
cost no WAL, vanish with the connection, and no one else sees them. The topics' records
go in by binary COPY (:mod:`scorer.log_rows` shapes them); every later step is one
set-based statement over all of them.

The switch touches only rows that differ: for each projection, a DELETE of the units'
rows the rebuild does not have, an UPDATE of those whose content differs, an INSERT of
those missing. A replay that finds the projections right writes nothing; one after a rule
change rewrites the scores that moved; one after the projections were dropped inserts
them all. Timestamps that say when the scorer first wrote a row (``events.scored_at``,
``leads.created_at``, ``aliases.created_at``, ``alias_conflicts.detected_at``) are kept
when the row is kept, and otherwise taken from the Kafka timestamp of the scored record
that decided it: the time the scorer published it, within its batch's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from leadvibe.consuming import _lock_offsets
from leadvibe.db import Connection
from scorer import store
from scorer.log_rows import StagedRow

REPLAY_LOCK = 0x1EAD_5E91
"""Advisory lock a replay holds for its whole run: one replay or rescore at a time."""

SESSION_SETTINGS = {
    # Temporary tables live in the session's own buffers (8 MB unless told otherwise).
    "temp_buffers": "1GB",
    # The statement ordering each lead's events sorts every staged event (about 500 bytes
    # each in memory): at 256MB the sort of 1,000,000 spilled 257 MB to disk and took half
    # the statement; at 1GB it stays in memory (measured: the statement 0.86x the time).
    # Only what a step uses is taken, and a replay runs one at a time.
    "work_mem": "1GB",
    # Every statement of a rebuild is bulk work over whole tables, some of them analysed
    # never (staging) or long ago (a projection just dropped or just refilled). A nested
    # loop chosen on a stale estimate of "one row" runs in quadratic time, a merge join
    # sorts both sides on text; a hash join is linear whatever the estimates. The switch's
    # index lookups ask for themselves (``_BY_INDEX``).
    "enable_nestloop": "off",
    "enable_mergejoin": "off",
    "jit": "off",
}

SCORED_COLUMNS = (
    "unit_id",
    "event_id",
    "lead_id",
    "event_type",
    "occurred_at",
    "source",
    "skip_triggers",
    "import_id",
    "import_row",
    "lead_created",
    "replay",
    "conflicts_known",
    "part",
    "off",
    "ts_ms",
    "points_was",
    "score_before_was",
    "score_after_was",
    "score_id",
)
ATTACHED_COLUMNS = ("unit_id", "event_id", "part", "off", "ord", "kind", "value")
CONFLICT_COLUMNS = ("unit_id", "event_id", "part", "off", "ord", "kind", "value", "owner_lead_id")
FACT_COLUMNS = ("unit_id", "event_id", "part", "off", "metadata")

_STAGING = """
DROP TABLE IF EXISTS rp_scored, rp_attached, rp_conflicts, rp_facts, rp_scores,
    rp_score_parts, rp_offsets, rp_offsets_then, rp_affected_events, rp_affected_leads,
    rp_multi_scored, rp_multi_facts, rp_new_events, rp_new_leads,
    rp_new_ruleset_scores, rp_new_aliases, rp_new_conflicts, rp_new_imports;

-- Every scored record of the units replayed, where it sits in the log, the points it had
-- and the number of the points the rules give it today (rp_scores).
CREATE TEMP TABLE rp_scored (
    unit_id text, event_id text, lead_id text, event_type text, occurred_at timestamptz,
    source text, skip_triggers boolean, import_id text, import_row integer,
    lead_created boolean, replay boolean, conflicts_known boolean,
    part integer, off bigint, ts_ms bigint,
    points_was bigint, score_before_was bigint, score_after_was bigint, score_id integer,
    pass smallint DEFAULT 1);
-- The aliases a scored record attached, and the conflicts it recorded (ord: their order).
CREATE TEMP TABLE rp_attached (
    unit_id text, event_id text, part integer, off bigint, ord integer, kind text, value text);
CREATE TEMP TABLE rp_conflicts (
    unit_id text, event_id text, part integer, off bigint, ord integer, kind text, value text,
    owner_lead_id text);
-- Every events-topic record of the units: where it sits, and its metadata as JSON text.
CREATE TEMP TABLE rp_facts (
    unit_id text, event_id text, part integer, off bigint, metadata text,
    pass smallint DEFAULT 1);
CREATE TEMP TABLE rp_scores (score_id integer PRIMARY KEY, total bigint);
CREATE TEMP TABLE rp_score_parts (score_id integer, ruleset_id text, points bigint);
-- The scorer's stored offsets on the events topic (locked, in the second pass), and those
-- the first pass went by; empty: the log alone decides.
CREATE TEMP TABLE rp_offsets (part integer PRIMARY KEY, next_offset bigint);
CREATE TEMP TABLE rp_offsets_then (part integer PRIMARY KEY, next_offset bigint);
-- What the second pass recomputes: the leads its records touch, and all their events.
CREATE TEMP TABLE rp_affected_events (unit_id text, event_id text);
CREATE TEMP TABLE rp_affected_leads (unit_id text, lead_id text);
-- The few events with several scored records, or several occurrences: to choose among.
CREATE TEMP TABLE rp_multi_scored (unit_id text, event_id text);
CREATE TEMP TABLE rp_multi_facts (unit_id text, event_id text);

-- The projections as rebuilt.
CREATE TEMP TABLE rp_new_events (
    unit_id text, event_id text, lead_id text, event_type text, occurred_at timestamptz,
    source text, skip_triggers boolean, import_id text, import_row integer,
    points bigint, score_after bigint, metadata jsonb, scored_at timestamptz,
    score_id integer, lead_created boolean, conflicts_known boolean,
    part integer, off bigint, seq bigint, last_of_lead boolean,
    points_was bigint, score_before_was bigint, score_after_was bigint);
CREATE TEMP TABLE rp_new_leads (
    unit_id text, lead_id text, score bigint, event_count bigint,
    first_event_at timestamptz, last_event_at timestamptz,
    created_at timestamptz, updated_at timestamptz);
CREATE TEMP TABLE rp_new_ruleset_scores (
    unit_id text, lead_id text, ruleset_id text, score bigint);
CREATE TEMP TABLE rp_new_aliases (
    unit_id text, kind text, value text, lead_id text, event_id text, created_at timestamptz);
CREATE TEMP TABLE rp_new_conflicts (
    unit_id text, event_id text, kind text, value text, owner_lead_id text,
    event_lead_id text, detected_at timestamptz);
CREATE TEMP TABLE rp_new_imports (
    unit_id text, import_id text, applied bigint, last_applied_at timestamptz);
"""


def _count(status: str) -> int:
    """The row count of a command status (``INSERT 0 12``, ``DELETE 3``)."""
    return int(status.rsplit(" ", 1)[1])


async def create_staging(conn: Connection) -> None:
    """(Re)create the empty staging tables of this connection."""
    await conn.execute(_STAGING)


async def try_lock(conn: Connection) -> bool:
    """Take the replay lock for this connection's session; False if another holds it."""
    taken: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", REPLAY_LOCK)
    return taken


async def units_of(conn: Connection, unit_id: str | None) -> list[str]:
    """The units to replay: ``unit_id`` if it exists, or every unit."""
    if unit_id is None:
        rows = await conn.fetch("SELECT unit_id FROM org_units ORDER BY unit_id")
    else:
        rows = await conn.fetch("SELECT unit_id FROM org_units WHERE unit_id = $1", unit_id)
    return [r["unit_id"] for r in rows]


async def copy_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[StagedRow]
) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


async def stage_scores(
    conn: Connection, totals: Sequence[StagedRow], parts: Sequence[StagedRow]
) -> None:
    """The scores the staged rows' numbers stand for (all of them, again)."""
    await conn.execute("TRUNCATE rp_scores, rp_score_parts")
    await copy_rows(conn, "rp_scores", ("score_id", "total"), totals)
    await copy_rows(conn, "rp_score_parts", ("score_id", "ruleset_id", "points"), parts)


async def lock_scorer(
    conn: Connection, group: str, topic: str, partitions: list[int]
) -> dict[int, int]:
    """Lock the scorer's offset rows of every partition (made at 0 where missing): its
    next batch waits for this transaction. Returns the stored offsets."""
    # The statement the scorer's own batches take first, so the two serialise on it.
    return await _lock_offsets(conn, group, topic, sorted(partitions))


async def stage_offsets(conn: Connection, offsets: dict[int, int]) -> None:
    await conn.execute("TRUNCATE rp_offsets")
    await copy_rows(conn, "rp_offsets", ("part", "next_offset"), list(offsets.items()))


async def facts_from_projection(conn: Connection, unit_ids: Sequence[str]) -> int:
    """Stage the units' applied events from the events projection instead of the topic:
    each one applied (no offsets to check), with its metadata. Only those not staged yet.

    What a rescore goes by: a rule change touches neither which events were applied nor
    their metadata. Returns how many were staged.
    """
    return _count(
        await conn.execute(
            """INSERT INTO rp_facts (unit_id, event_id, part, off, metadata)
               SELECT e.unit_id, e.event_id, -1, -1, e.metadata::text
               FROM events AS e
               WHERE e.unit_id = ANY($1::text[])
                 AND NOT EXISTS (SELECT FROM rp_facts AS f
                                 WHERE f.unit_id = e.unit_id AND f.event_id = e.event_id)""",
            list(unit_ids),
        )
    )


# Sorts and windows key on text in the "C" collation: byte order, several times faster
# to sort than the database's own, and any fixed order does here.
#
# ``{events}`` and ``{leads}`` restrict a statement to the events and leads of the second
# pass (``rp_affected_*``), or to nothing (the first pass builds everything).
_MULTI = (
    """INSERT INTO rp_multi_scored
       SELECT unit_id, event_id FROM rp_scored AS s WHERE true {events_s}
       GROUP BY unit_id, event_id HAVING count(*) > 1""",
    """INSERT INTO rp_multi_facts
       SELECT unit_id, event_id FROM rp_facts AS f WHERE true {events_f}
       GROUP BY unit_id, event_id HAVING count(*) > 1""",
)
# - A later record of an event supersedes an earlier one (a record published again after a
#   crash, a replay's record). An event's place in its lead's history is that of its latest
#   original record, as is the time it was applied. A lead's records share a partition
#   (their key is unit:lead): their offsets are the order the scorer applied them in.
# - An event is applied when one of its occurrences is below the scorer's offsets: a record
#   whose batch was rolled back (published, then the scorer died) is not, until the scorer
#   applies the event again. With no offsets, the log alone decides.
# - score_after is the running sum of the new points, in that order.
_EVENTS = """
    INSERT INTO rp_new_events
    WITH latest AS (
        SELECT unit_id, event_id, lead_id, event_type, occurred_at, source, skip_triggers,
               import_id, import_row, lead_created, conflicts_known, part, off, score_id,
               points_was, score_before_was, score_after_was, off AS seq, ts_ms AS first_ts
        FROM rp_scored AS s
        WHERE NOT EXISTS (SELECT FROM rp_multi_scored AS m
                          WHERE m.unit_id = s.unit_id AND m.event_id = s.event_id) {events_s}
        UNION ALL
        (SELECT DISTINCT ON (s.unit_id COLLATE "C", s.event_id COLLATE "C")
                s.unit_id, s.event_id, s.lead_id, s.event_type, s.occurred_at, s.source,
                s.skip_triggers, s.import_id, s.import_row, s.lead_created,
                s.conflicts_known, s.part, s.off, s.score_id, s.points_was,
                s.score_before_was, s.score_after_was,
                coalesce(max(s.off) FILTER (WHERE NOT s.replay) OVER same, s.off),
                coalesce(max(s.ts_ms) FILTER (WHERE NOT s.replay) OVER same, s.ts_ms)
         FROM rp_scored AS s JOIN rp_multi_scored USING (unit_id, event_id)
         WHERE true {events_s}
         WINDOW same AS (PARTITION BY s.unit_id, s.event_id, s.part)
         ORDER BY s.unit_id COLLATE "C", s.event_id COLLATE "C", s.ts_ms DESC, s.off DESC)
    ), occurrence AS (
        SELECT f.unit_id, f.event_id, f.metadata,
               coalesce(f.off < o.next_offset, true) AS committed
        FROM rp_facts AS f LEFT JOIN rp_offsets AS o USING (part)
        WHERE NOT EXISTS (SELECT FROM rp_multi_facts AS m
                          WHERE m.unit_id = f.unit_id AND m.event_id = f.event_id) {events_f}
        UNION ALL
        (SELECT DISTINCT ON (f.unit_id COLLATE "C", f.event_id COLLATE "C")
                f.unit_id, f.event_id, f.metadata, coalesce(f.off < o.next_offset, true)
         FROM rp_facts AS f JOIN rp_multi_facts USING (unit_id, event_id)
         LEFT JOIN rp_offsets AS o USING (part)
         WHERE true {events_f}
         ORDER BY f.unit_id COLLATE "C", f.event_id COLLATE "C",
                  coalesce(f.off < o.next_offset, true) DESC, f.part, f.off)
    )
    SELECT e.unit_id, e.event_id, e.lead_id, e.event_type, e.occurred_at, e.source,
           e.skip_triggers, e.import_id, e.import_row, s.total,
           sum(s.total) OVER lead_history,
           coalesce(o.metadata, '{{}}')::jsonb, to_timestamp(e.first_ts / 1000.0),
           e.score_id, e.lead_created, e.conflicts_known, e.part, e.off, e.seq,
           lead(e.seq) OVER lead_history IS NULL,
           e.points_was, e.score_before_was, e.score_after_was
    FROM latest AS e
    JOIN rp_scores AS s USING (score_id)
    LEFT JOIN occurrence AS o USING (unit_id, event_id)
    WHERE o.committed
    WINDOW lead_history AS (PARTITION BY e.unit_id COLLATE "C", e.lead_id COLLATE "C"
                            ORDER BY e.part, e.seq ROWS UNBOUNDED PRECEDING)"""
_LEADS = (
    """INSERT INTO rp_new_leads
       SELECT unit_id, lead_id, sum(points), count(*), min(occurred_at), max(occurred_at),
              coalesce(min(scored_at) FILTER (WHERE lead_created), min(scored_at)),
              max(scored_at)
       FROM rp_new_events AS e WHERE true {leads_e}
       GROUP BY unit_id, lead_id""",
    """INSERT INTO rp_new_ruleset_scores
       SELECT e.unit_id, e.lead_id, p.ruleset_id, sum(p.points)
       FROM rp_new_events AS e JOIN rp_score_parts AS p USING (score_id)
       WHERE true {leads_e}
       GROUP BY e.unit_id, e.lead_id, p.ruleset_id""",
)
_DECISIONS = (
    # Only the decisions of an event's latest record count: joined on where it sits.
    """INSERT INTO rp_new_aliases
       SELECT DISTINCT ON (a.unit_id COLLATE "C", a.kind COLLATE "C", a.value COLLATE "C")
              a.unit_id, a.kind, a.value, e.lead_id, e.event_id, e.scored_at
       FROM rp_attached AS a JOIN rp_new_events AS e USING (unit_id, event_id, part, off)
       WHERE true {leads_e}
       ORDER BY a.unit_id COLLATE "C", a.kind COLLATE "C", a.value COLLATE "C", e.part, e.seq""",
    """INSERT INTO rp_new_conflicts
       SELECT c.unit_id, c.event_id, c.kind, c.value, c.owner_lead_id, e.lead_id, e.scored_at
       FROM rp_conflicts AS c JOIN rp_new_events AS e USING (unit_id, event_id, part, off)
       WHERE true {leads_e}""",
    # Records of scorers older than alias_conflicts did not say: keep what was recorded.
    """INSERT INTO rp_new_conflicts
       SELECT c.unit_id, c.event_id, c.kind, c.value, c.owner_lead_id, c.event_lead_id,
              c.detected_at
       FROM alias_conflicts AS c JOIN rp_new_events AS e USING (unit_id, event_id)
       WHERE NOT e.conflicts_known {leads_e}""",
    # Imports are few: counted whole in either pass.
    "TRUNCATE rp_new_imports",
    """INSERT INTO rp_new_imports
       SELECT unit_id, import_id, count(*), max(scored_at)
       FROM rp_new_events WHERE import_id IS NOT NULL GROUP BY unit_id, import_id""",
)
_AFFECTED_EVENTS = (
    "EXISTS (SELECT FROM rp_affected_events AS a"
    " WHERE a.unit_id = {t}.unit_id AND a.event_id = {t}.event_id)"
)
_AFFECTED_LEADS = (
    "EXISTS (SELECT FROM rp_affected_leads AS a"
    " WHERE a.unit_id = {t}.unit_id AND a.lead_id = {t}.lead_id)"
)


def _restricted(statement: str, *, only_affected: bool) -> str:
    def clause(template: str, table: str) -> str:
        return "AND " + template.format(t=table) if only_affected else ""

    return statement.format(
        events_s=clause(_AFFECTED_EVENTS, "s"),
        events_f=clause(_AFFECTED_EVENTS, "f"),
        leads_e=clause(_AFFECTED_LEADS, "e"),
    )


def _pass(statements: tuple[str, ...], *, only_affected: bool) -> tuple[str, ...]:
    return tuple(_restricted(statement, only_affected=only_affected) for statement in statements)


# Temporary tables are never analysed by autovacuum: without statistics the planner guessed
# 4,200,000 per-ruleset score groups where there were 267,000, and sorted 900,000 joined rows
# to group them where hashing is linear. An ANALYZE samples 30,000 rows of a table.
_ANALYZE_STAGED = "ANALYZE rp_scored, rp_facts, rp_attached"
_ANALYZE_EVENTS = "ANALYZE rp_new_events"
_BUILD = _pass(
    (_ANALYZE_STAGED, *_MULTI, _EVENTS, _ANALYZE_EVENTS, *_LEADS, *_DECISIONS),
    only_affected=False,
)
# The rows of the affected leads go, and come back rebuilt from all their records.
_REBUILD_AFFECTED = (
    """DELETE FROM rp_multi_scored AS m USING rp_affected_events AS a
       WHERE a.unit_id = m.unit_id AND a.event_id = m.event_id""",
    """DELETE FROM rp_multi_facts AS m USING rp_affected_events AS a
       WHERE a.unit_id = m.unit_id AND a.event_id = m.event_id""",
    *(
        f"""DELETE FROM {table} AS e USING rp_affected_leads AS a
            WHERE a.unit_id = e.unit_id AND a.lead_id = e.lead_id"""
        for table in ("rp_new_events", "rp_new_leads", "rp_new_ruleset_scores", "rp_new_aliases")
    ),
    """DELETE FROM rp_new_conflicts AS e USING rp_affected_leads AS a
       WHERE a.unit_id = e.unit_id AND a.lead_id = e.event_lead_id""",
    *_pass((*_MULTI, _EVENTS, *_LEADS, *_DECISIONS), only_affected=True),
)
BUILD_STEPS = len(_BUILD)
REBUILD_STEPS = len(_REBUILD_AFFECTED)


async def build(conn: Connection, *, step: Callable[[], object] | None = None) -> None:
    """Build the projections in staging from every staged record (the first pass).

    ``step``, if given, is called after each statement (progress).
    """
    for statement in _BUILD:
        await conn.execute(statement)
        if step is not None:
            step()


async def begin_second_pass(conn: Connection) -> None:
    """Rows staged from now on belong to the second pass; the offsets staged so far are
    those the first pass went by."""
    await conn.execute(
        """ALTER TABLE rp_scored ALTER pass SET DEFAULT 2;
           ALTER TABLE rp_facts ALTER pass SET DEFAULT 2;
           TRUNCATE rp_offsets_then;
           INSERT INTO rp_offsets_then SELECT * FROM rp_offsets"""
    )


_AFFECTED = (
    "TRUNCATE rp_affected_events, rp_affected_leads",
    # Events with a record or an occurrence staged in the second pass, or an occurrence
    # that the scorer's offsets have passed since the first.
    """INSERT INTO rp_affected_events
       SELECT unit_id, event_id FROM rp_scored WHERE pass = 2
       UNION SELECT unit_id, event_id FROM rp_facts WHERE pass = 2
       UNION SELECT f.unit_id, f.event_id
             FROM rp_facts AS f JOIN rp_offsets AS n USING (part)
             LEFT JOIN rp_offsets_then AS t USING (part)
             WHERE f.off < n.next_offset AND f.off >= coalesce(t.next_offset, 0)""",
)
# Then, until nothing is added: the leads any record of those events names, and every
# event with a record naming one of those leads. A lead is rebuilt whole or not at all.
_MORE_LEADS = """
    INSERT INTO rp_affected_leads
    SELECT DISTINCT s.unit_id, s.lead_id
    FROM rp_scored AS s JOIN rp_affected_events USING (unit_id, event_id)
    EXCEPT SELECT unit_id, lead_id FROM rp_affected_leads"""
_MORE_EVENTS = """
    INSERT INTO rp_affected_events
    SELECT DISTINCT s.unit_id, s.event_id
    FROM rp_scored AS s JOIN rp_affected_leads USING (unit_id, lead_id)
    EXCEPT SELECT unit_id, event_id FROM rp_affected_events"""


async def rebuild_affected(
    conn: Connection, *, step: Callable[[], object] | None = None
) -> tuple[int, int]:
    """Rebuild in staging what the second pass's records change: every lead they touch,
    whole. Returns how many leads and events were rebuilt."""
    for statement in _AFFECTED:
        await conn.execute(statement)
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM rp_affected_events)"):
        return 0, 0
    leads = 0
    while True:
        added = _count(await conn.execute(_MORE_LEADS))
        leads += added
        if not added or not _count(await conn.execute(_MORE_EVENTS)):
            break
    for statement in _REBUILD_AFFECTED:
        await conn.execute(statement)
        if step is not None:
            step()
    events: int = await conn.fetchval("SELECT count(*) FROM rp_affected_events")
    return leads, events


class Totals(NamedTuple):
    leads: int
    events: int
    aliases: int
    conflicts: int
    imports: int
    events_rescored: int
    """Events whose points differ from those of their latest scored record."""
    leads_rescored: int
    """Leads whose score differs from the score after their latest scored record."""
    to_publish: int
    """Events whose points or scores differ from their latest scored record."""


_CHANGED = """(n.points, n.score_after - n.points, n.score_after)
              IS DISTINCT FROM (n.points_was, n.score_before_was, n.score_after_was)"""


async def totals(conn: Connection) -> Totals:
    row = await conn.fetchrow(
        f"""SELECT (SELECT count(*) FROM rp_new_leads),
                   count(*),
                   (SELECT count(*) FROM rp_new_aliases),
                   (SELECT count(*) FROM rp_new_conflicts),
                   (SELECT count(*) FROM rp_new_imports),
                   count(*) FILTER (WHERE n.points IS DISTINCT FROM n.points_was),
                   count(*) FILTER (WHERE n.last_of_lead
                                    AND n.score_after IS DISTINCT FROM n.score_after_was),
                   count(*) FILTER (WHERE {_CHANGED})
            FROM rp_new_events AS n"""
    )
    assert row is not None
    return Totals(*row)


@dataclass(frozen=True)
class _Projection:
    """How one projection table is switched to its staged rows."""

    table: str
    staged: str
    key: tuple[str, ...]
    compared: tuple[str, ...]
    """Columns whose difference makes the row be updated."""
    carried: tuple[str, ...] = ()
    """Columns updated along with the compared ones, their difference alone does not count."""
    kept: tuple[str, ...] = ()
    """Columns written when the row is inserted, and kept as they are otherwise."""
    touched: str | None = None
    """A column set to now() when the row is updated."""

    @property
    def diff(self) -> str:
        return f"rp_diff_{self.table}"

    def create_diff(self) -> str:
        columns = ", ".join((*self.key, *self.compared, *self.carried, *self.kept))
        return f"""DROP TABLE IF EXISTS {self.diff};
                   CREATE TEMP TABLE {self.diff} AS
                   SELECT 'I'::text AS action, {columns} FROM {self.staged} WITH NO DATA"""

    def find_diff(self) -> str:
        """The rows to delete (D), update (U) and insert (I): one full join of the staged
        rows with the units' rows."""
        k = self.key[-1]
        live = ", ".join((*self.key, *self.compared))
        on = " AND ".join(f"n.{c} = t.{c}" for c in self.key)
        keys = ", ".join(f"coalesce(n.{c}, t.{c})" for c in self.key)
        rest = ", ".join(f"n.{c}" for c in (*self.compared, *self.carried, *self.kept))
        old = ", ".join(f"t.{c}" for c in self.compared)
        new = ", ".join(f"n.{c}" for c in self.compared)
        return f"""INSERT INTO {self.diff}
                   SELECT CASE WHEN t.{k} IS NULL THEN 'I' WHEN n.{k} IS NULL THEN 'D'
                               ELSE 'U' END, {keys}, {rest}
                   FROM {self.staged} AS n
                   FULL JOIN (SELECT {live} FROM {self.table} WHERE unit_id = ANY($1::text[]))
                        AS t ON {on}
                   WHERE t.{k} IS NULL OR n.{k} IS NULL
                      OR ROW({old}) IS DISTINCT FROM ROW({new})"""

    def apply(self) -> dict[str, str]:
        """The statement applying each action of the diff."""
        same_key = " AND ".join(f"t.{c} = d.{c}" for c in self.key)
        sets = [f"{c} = d.{c}" for c in (*self.compared, *self.carried)]
        if self.touched:
            sets.append(f"{self.touched} = now()")
        columns = ", ".join((*self.key, *self.compared, *self.carried, *self.kept))
        return {
            "D": f"""DELETE FROM {self.table} AS t USING {self.diff} AS d
                     WHERE d.action = 'D' AND {same_key}""",
            "U": f"""UPDATE {self.table} AS t SET {", ".join(sets)} FROM {self.diff} AS d
                     WHERE d.action = 'U' AND {same_key}""",
            "I": f"""INSERT INTO {self.table} ({columns})
                     SELECT {columns} FROM {self.diff} WHERE action = 'I'""",
        }


PROJECTIONS = (
    _Projection(
        "events",
        "rp_new_events",
        key=("unit_id", "event_id"),
        compared=(
            "lead_id",
            "event_type",
            "occurred_at",
            "source",
            "skip_triggers",
            "import_id",
            "import_row",
            "points",
            "score_after",
            "metadata",
        ),
        kept=("scored_at",),
    ),
    _Projection(
        "leads",
        "rp_new_leads",
        key=("unit_id", "lead_id"),
        compared=("score", "event_count", "first_event_at", "last_event_at"),
        kept=("created_at", "updated_at"),
        touched="updated_at",
    ),
    _Projection(
        "lead_ruleset_scores",
        "rp_new_ruleset_scores",
        key=("unit_id", "lead_id", "ruleset_id"),
        compared=("score",),
    ),
    _Projection(
        "aliases",
        "rp_new_aliases",
        key=("unit_id", "kind", "value"),
        compared=("lead_id", "event_id"),
        kept=("created_at",),
    ),
    _Projection(
        "alias_conflicts",
        "rp_new_conflicts",
        key=("unit_id", "event_id", "kind", "value"),
        compared=("owner_lead_id", "event_lead_id"),
        kept=("detected_at",),
    ),
    _Projection(
        "import_progress",
        "rp_new_imports",
        key=("unit_id", "import_id"),
        compared=("applied",),
        carried=("last_applied_at",),
    ),
)


class Written(NamedTuple):
    """Rows a switch deleted, updated and inserted in one projection."""

    deleted: int
    updated: int
    inserted: int


# The rows to delete or update are found through the primary key, one lookup each: the
# diff is often small beside the table, and a hash join would read the whole table.
_BY_INDEX = (
    "SET LOCAL enable_nestloop = on",
    "SET LOCAL enable_hashjoin = off",
    "SET LOCAL enable_mergejoin = off",
)
_BY_DEFAULT = (
    "SET LOCAL enable_nestloop = off",
    "SET LOCAL enable_hashjoin = on",
    "SET LOCAL enable_mergejoin = off",
)


async def switch(
    conn: Connection, unit_ids: Sequence[str], *, step: Callable[[], object] | None = None
) -> dict[str, Written]:
    """Make the units' projections what staging holds, writing only rows that differ.

    Inside the caller's transaction: readers see the old projections until it commits.
    ``step``, if given, is called after each projection (progress). The units' projection
    generation is bumped with it, so that scorers drop what they hold of the units in
    memory before their next batch of them (the caller holds their offset locks).
    """
    await store.bump_generations(conn, unit_ids)
    written: dict[str, Written] = {}
    for projection in PROJECTIONS:
        await conn.execute(projection.create_diff())
        await conn.execute(projection.find_diff(), list(unit_ids))
        counts = dict.fromkeys("DUI", 0)
        for action, count in await conn.fetch(
            f"SELECT action, count(*) FROM {projection.diff} GROUP BY action"
        ):
            counts[action] = count
        for action, statement in projection.apply().items():
            if counts[action]:
                for setting in _BY_INDEX if action != "I" else ():
                    await conn.execute(setting)
                await conn.execute(statement)
                for setting in _BY_DEFAULT if action != "I" else ():
                    await conn.execute(setting)
        written[projection.table] = Written(counts["D"], counts["U"], counts["I"])
        if step is not None:
            step()
    return written


CHANGED_RECORDS = f"""
    SELECT n.unit_id, n.event_id, n.lead_id, n.event_type, n.occurred_at, n.points,
           n.score_after, n.skip_triggers, n.source, n.import_id, n.import_row,
           n.lead_created, n.conflicts_known,
           coalesce(a.kinds, '{{}}') AS attached_kinds, coalesce(a.vals, '{{}}') AS attached_values,
           coalesce(c.kinds, '{{}}') AS conflict_kinds, coalesce(c.vals, '{{}}') AS conflict_values,
           coalesce(c.owners, '{{}}') AS conflict_owners
    FROM rp_new_events AS n
    LEFT JOIN (SELECT unit_id, event_id, part, off, array_agg(kind ORDER BY ord) AS kinds,
                      array_agg(value ORDER BY ord) AS vals
               FROM rp_attached GROUP BY 1, 2, 3, 4) AS a USING (unit_id, event_id, part, off)
    LEFT JOIN (SELECT unit_id, event_id, part, off, array_agg(kind ORDER BY ord) AS kinds,
                      array_agg(value ORDER BY ord) AS vals,
                      array_agg(owner_lead_id ORDER BY ord) AS owners
               FROM rp_conflicts GROUP BY 1, 2, 3, 4) AS c USING (unit_id, event_id, part, off)
    WHERE {_CHANGED}
    ORDER BY n.unit_id, n.lead_id, n.part, n.seq"""
"""The rebuilt events whose points or scores differ from their latest scored record, in
the order of their leads' histories, with the decisions that record carried."""
