"""The trigger service's SQL: set-based, one statement per batch, never one per record.

The consumer reads its batch's active triggers in one query and writes its firings in one
insert. The delivery worker uses the firings table as its queue: it claims due firings
with ``FOR UPDATE SKIP LOCKED`` and pushes their next attempt time out as a lease, so a
second service instance never delivers the same firing at the same time, and a crashed
one's claims come due again when the lease ends.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Literal, NamedTuple

import asyncpg

from leadvibe.db import Connection, columns
from trigger_service.decisions import Trigger

FIRINGS_CHANNEL = "leadvibe_trigger_firings"
"""NOTIFY channel: a transaction that recorded firings wakes the delivery worker on commit."""

DeliveryStatus = Literal["pending", "delivered", "failed"]


class FiringRow(NamedTuple):
    """A firing as recorded, before its delivery."""

    firing_id: str
    unit_id: str
    trigger_id: str
    lead_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    score_threshold: int
    score_before: int
    score_after: int
    once: bool
    fired_at: datetime


class Delivery(NamedTuple):
    """A claimed firing: what to send, where, which attempt this is, and how to sign it."""

    firing: FiringRow
    attempt: int
    webhook_url: str
    secret_versions: tuple[int, ...] = (0,)
    """The trigger's active signing secrets: the current one, then the previous one during
    a rollover."""
    legacy_signature: bool = False
    """Also sign the old way (``X-LeadVibe-Signature``): a trigger made before migration
    0006 whose version-0 secret is still active."""


class AttemptResult(NamedTuple):
    firing_id: str
    attempt: int
    url: str
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    """None when the receiver answered 2xx."""
    status: DeliveryStatus
    next_attempt_at: datetime | None
    """When to try again, for a status of ``pending``."""


async def active_triggers(conn: Connection, unit_ids: Collection[str]) -> list[Trigger]:
    rows = await conn.fetch(
        """SELECT trigger_id, unit_id, score_threshold, event_type, fire_mode = 'once' AS once
           FROM triggers WHERE active AND unit_id = ANY($1::text[])""",
        list(unit_ids),
    )
    return [
        Trigger(r["trigger_id"], r["unit_id"], r["score_threshold"], r["event_type"], r["once"])
        for r in rows
    ]


async def fired_before(
    conn: Connection, pairs: Collection[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Those (trigger_id, lead_id) pairs that have a firing already."""
    if not pairs:
        return set()
    trigger_ids, lead_ids = columns(list(pairs), 2)
    # LATERAL ... LIMIT 1: one index probe per pair, however many firings there are.
    rows = await conn.fetch(
        """SELECT p.trigger_id, p.lead_id
           FROM unnest($1::text[], $2::text[]) AS p (trigger_id, lead_id)
           CROSS JOIN LATERAL (
               SELECT 1 FROM trigger_firings f
               WHERE f.trigger_id = p.trigger_id AND f.lead_id = p.lead_id
               LIMIT 1) AS fired""",
        trigger_ids,
        lead_ids,
    )
    return {(r["trigger_id"], r["lead_id"]) for r in rows}


async def insert_firings(conn: Connection, firings: Sequence[FiringRow]) -> set[str]:
    """Record the firings not recorded before; return the ids of those recorded now.

    A firing whose trigger was deleted or deactivated since the batch read it is dropped,
    and the triggers that fire are key-share locked until the commit, so that a trigger
    deleted meanwhile takes its new firings with it (what a foreign key would do, in one
    statement instead of a lookup per row).
    The caller has left out the fire-once firings of leads that fired before
    (:func:`fired_before`, in the same transaction; a lead's records are consumed by one
    member at a time); the partial unique index settles any race all the same. The
    delivery worker is notified when the transaction commits.
    """
    if not firings:
        return set()
    rows = await conn.fetch(
        """INSERT INTO trigger_firings (firing_id, unit_id, trigger_id, lead_id, event_id,
               event_type, occurred_at, score_threshold, score_before, score_after, once,
               fired_at, next_attempt_at)
           SELECT f.firing_id, f.unit_id, f.trigger_id, f.lead_id, f.event_id, f.event_type,
                  f.occurred_at, f.score_threshold, f.score_before, f.score_after, f.once,
                  f.fired_at, f.fired_at
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::timestamptz[], $8::bigint[], $9::bigint[], $10::bigint[],
                       $11::boolean[], $12::timestamptz[])
                AS f (firing_id, unit_id, trigger_id, lead_id, event_id, event_type,
                      occurred_at, score_threshold, score_before, score_after, once, fired_at)
           JOIN triggers t ON t.trigger_id = f.trigger_id AND t.unit_id = f.unit_id AND t.active
           ORDER BY f.trigger_id, f.event_id
           FOR KEY SHARE OF t
           ON CONFLICT DO NOTHING
           RETURNING firing_id""",
        *columns(firings, len(FiringRow._fields)),
    )
    if rows:
        await conn.execute("SELECT pg_notify($1, '')", FIRINGS_CHANNEL)
    return {r["firing_id"] for r in rows}


_FIRING_COLUMNS = """f.firing_id, f.unit_id, f.trigger_id, f.lead_id, f.event_id, f.event_type,
    f.occurred_at, f.score_threshold, f.score_before, f.score_after, f.once, f.fired_at"""


def _firing(row: asyncpg.Record) -> FiringRow:
    return FiringRow(*(row[name] for name in FiringRow._fields))


class Claim(NamedTuple):
    deliveries: list[Delivery]
    last_unit: str | None
    """The unit served last, in turn order: the next claim's ``after_unit``."""


async def claim(
    conn: Connection,
    *,
    limit: int,
    per_trigger: int,
    in_flight: Mapping[str, int],
    lease_seconds: float,
    per_unit: int | None = None,
    unit_in_flight: Mapping[str, int] | None = None,
    after_unit: str = "",
) -> Claim:
    """Claim up to ``limit`` due firings, round-robin across the units that have some.

    Units take turns in the order of their ids, from the one after ``after_unit`` (the
    ``last_unit`` of the claim before), wrapping around: a claim walks at most a bounded
    number of units that have pending firings (one index probe each, however many
    firings one of them has queued), so its cost does not grow with the queue. Each unit
    walked gives the oldest due firings of each of its triggers, at most ``per_unit`` in
    flight in all and ``per_trigger`` per trigger (``unit_in_flight`` and ``in_flight``
    count what this worker has running), the least busy triggers first; the claim takes every
    walked unit's first firing, then every unit's second, and so on. So one unit's
    backlog or hanging receivers never take the slots of the others. A claim moves the
    firing's next attempt ``lease_seconds`` ahead: if the worker dies before recording
    the attempt, the firing comes due again then.
    """
    unit_cap = per_unit if per_unit is not None else limit
    units_busy = unit_in_flight or {}
    rows = await conn.fetch(
        f"""WITH RECURSIVE busy AS (
                SELECT * FROM unnest($3::text[], $4::int[]) AS b (trigger_id, running)
            ), unit_busy AS (
                SELECT * FROM unnest($6::text[], $7::int[]) AS b (unit_id, running)
            ), after_cursor AS (
                -- The units with pending firings after the cursor, by a skip scan that
                -- runs only as far as the walk below reads it.
                (SELECT unit_id FROM trigger_firings
                 WHERE delivery_status = 'pending' AND unit_id > $9
                 ORDER BY unit_id LIMIT 1)
                UNION ALL
                SELECT (SELECT f.unit_id FROM trigger_firings f
                        WHERE f.delivery_status = 'pending' AND f.unit_id > a.unit_id
                        ORDER BY f.unit_id LIMIT 1)
                FROM after_cursor a WHERE a.unit_id IS NOT NULL
            ), up_to_cursor AS (
                -- Then, wrapping around, those from the first up to the cursor.
                (SELECT unit_id FROM trigger_firings
                 WHERE delivery_status = 'pending' AND unit_id <= $9
                 ORDER BY unit_id LIMIT 1)
                UNION ALL
                SELECT (SELECT f.unit_id FROM trigger_firings f
                        WHERE f.delivery_status = 'pending' AND f.unit_id > b.unit_id
                          AND f.unit_id <= $9
                        ORDER BY f.unit_id LIMIT 1)
                FROM up_to_cursor b WHERE b.unit_id IS NOT NULL
            ), walk AS (
                SELECT w.unit_id, row_number() OVER (ORDER BY w.unit_id <= $9, w.unit_id) AS turn
                FROM ((SELECT unit_id FROM after_cursor WHERE unit_id IS NOT NULL LIMIT $10)
                      UNION ALL
                      (SELECT unit_id FROM up_to_cursor WHERE unit_id IS NOT NULL LIMIT $10))
                     AS w
            ), trigger_room AS (
                -- Each unit walked that has a free slot: the oldest due firings of each of
                -- its triggers with a free slot (a unit has few: LEADVIBE_MAX_TRIGGERS_PER_UNIT),
                -- so that a trigger's backlog never hides the unit's other triggers.
                -- trigger_load: what the trigger would have in flight with this one too.
                SELECT d.firing_id, w.unit_id, d.next_attempt_at, w.turn,
                       coalesce(ub.running, 0) AS unit_running,
                       d.n + coalesce(b.running, 0) AS trigger_load
                FROM walk w
                LEFT JOIN unit_busy ub ON ub.unit_id = w.unit_id
                JOIN triggers t ON t.unit_id = w.unit_id
                LEFT JOIN busy b ON b.trigger_id = t.trigger_id
                CROSS JOIN LATERAL (
                    SELECT f.firing_id, f.next_attempt_at,
                           row_number() OVER (ORDER BY f.next_attempt_at) AS n
                    FROM trigger_firings f
                    WHERE f.unit_id = w.unit_id AND f.trigger_id = t.trigger_id
                      AND f.delivery_status = 'pending' AND f.next_attempt_at <= now()
                    ORDER BY f.next_attempt_at
                    LIMIT greatest($2 - coalesce(b.running, 0), 0)) AS d
                WHERE w.turn <= $10 AND coalesce(ub.running, 0) < $8
                  AND coalesce(b.running, 0) < $2
            ), candidates AS (
                SELECT d.firing_id, d.turn
                FROM (SELECT *, row_number() OVER (PARTITION BY unit_id
                                                   ORDER BY trigger_load, next_attempt_at,
                                                            firing_id) AS n
                      FROM trigger_room) AS d
                WHERE d.n <= $8 - d.unit_running
                ORDER BY d.n + d.unit_running, d.turn
                LIMIT $1
            ), picked AS (
                SELECT f.firing_id, c.turn
                FROM trigger_firings f JOIN candidates c ON c.firing_id = f.firing_id
                WHERE f.delivery_status = 'pending' AND f.next_attempt_at <= now()
                FOR UPDATE OF f SKIP LOCKED
            )
            UPDATE trigger_firings f
            SET next_attempt_at = now() + make_interval(secs => $5)
            FROM picked, triggers t
            WHERE f.firing_id = picked.firing_id
              AND t.trigger_id = f.trigger_id AND t.unit_id = f.unit_id
            RETURNING {_FIRING_COLUMNS}, f.attempts + 1 AS attempt, t.webhook_url,
                      t.secret_version,
                      CASE WHEN t.previous_secret_expires_at > now()
                           THEN t.previous_secret_version END AS previous_secret_version,
                      t.legacy_signature, picked.turn""",
        limit,
        per_trigger,
        list(in_flight),
        list(in_flight.values()),
        lease_seconds,
        list(units_busy),
        list(units_busy.values()),
        unit_cap,
        after_unit,
        # Units walked: enough to fill the free slots two units a slot, and some more
        # when most of them are full.
        max(2 * limit, 16),
    )
    last = max(rows, key=lambda r: r["turn"], default=None)
    return Claim([_delivery(r) for r in rows], last["unit_id"] if last else None)


def _delivery(row: asyncpg.Record) -> Delivery:
    versions: tuple[int, ...] = (row["secret_version"],)
    if row["previous_secret_version"] is not None:
        versions += (row["previous_secret_version"],)
    return Delivery(
        _firing(row),
        row["attempt"],
        row["webhook_url"],
        secret_versions=versions,
        legacy_signature=row["legacy_signature"] and 0 in versions,
    )


async def record_attempts(conn: Connection, results: Sequence[AttemptResult]) -> int:
    """Log attempts and move their firings on; return how many were recorded.

    A firing only moves on from the attempt before the one recorded, so that an attempt
    two workers both made (a lease that ran out under a stalled worker) is logged once,
    and one of a firing deleted meanwhile not at all.
    """
    if not results:
        return 0
    ordered = sorted(results, key=lambda r: r.firing_id)  # lock rows in one order
    status: str = await conn.execute(
        """WITH r AS (
               SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[],
                                    $5::int[], $6::int[], $7::text[], $8::text[],
                                    $9::timestamptz[])
                   AS r (firing_id, attempt, url, started_at, duration_ms, status_code, error,
                         status, next_attempt_at)
           ), moved AS (
               UPDATE trigger_firings f
               SET attempts = r.attempt, delivery_status = r.status,
                   next_attempt_at = r.next_attempt_at, last_error = r.error,
                   delivered_at = CASE WHEN r.status = 'delivered' THEN now() END
               FROM r
               WHERE f.firing_id = r.firing_id AND f.attempts = r.attempt - 1
                 AND f.delivery_status = 'pending'
               RETURNING f.firing_id, f.unit_id, r.attempt, r.url, r.started_at,
                         r.duration_ms, r.status_code, r.error
           )
           INSERT INTO webhook_attempts (firing_id, attempt, unit_id, url, started_at,
               duration_ms, status_code, error)
           SELECT firing_id, attempt, unit_id, url, started_at, duration_ms, status_code, error
           FROM moved
           ON CONFLICT DO NOTHING""",
        *columns(ordered, len(AttemptResult._fields)),
    )
    return int(status.rsplit(" ", 1)[1])


async def release(conn: Connection | asyncpg.Pool, firing_ids: Collection[str]) -> None:
    """Make claimed firings due now again (their attempts were abandoned, not made)."""
    await conn.execute(
        """UPDATE trigger_firings SET next_attempt_at = now()
           WHERE firing_id = ANY($1::text[]) AND delivery_status = 'pending'""",
        list(firing_ids),
    )


async def seconds_until_due(conn: Connection) -> float | None:
    """Seconds until the next pending firing is due (0 if one is due); None if none pends."""
    value: float | None = await conn.fetchval(
        """SELECT greatest(0, extract(epoch FROM min(next_attempt_at) - now()))::float8
           FROM trigger_firings WHERE delivery_status = 'pending'"""
    )
    return value
