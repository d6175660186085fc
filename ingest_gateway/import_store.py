"""The imports table: every query the gateway makes about imports, scoped to one unit.

An import is recorded once its file passed the whole-file checks, before its events are
published (``publishing``); it becomes ``completed`` once Kafka acknowledged every event,
or ``failed`` when publishing could not finish. A retry with the same Idempotency-Key has
the same import id and takes the row over, unless it is completed.

Each attempt records its :class:`Publisher` (the gateway instance and that process's boot
id), so that :func:`fail_abandoned` can tell an import whose publisher died (a crash, a
SIGTERM mid-publish) from one still being published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from ingest_gateway.csv_rows import RowError

ERROR_ROWS_KEPT: Final = 10_000
"""Error rows an import keeps (for GET /imports/{id}); beyond them they are only counted."""


@dataclass(frozen=True)
class Publisher:
    """The gateway process publishing an import: its instance name and this start's id."""

    instance: str
    boot: str


@dataclass(frozen=True)
class ImportRecord:
    unit_id: str
    import_id: str
    status: str
    skip_triggers: bool
    imported: int
    errors: int
    error_rows: list[RowError]
    ignored_columns: list[str]
    failure: str | None
    created_at: datetime
    """When the first try was received; the time part of the import's event ids."""
    completed_at: datetime | None
    event_ids: str
    """The form of its event ids: ``ordered``, or ``uuid5`` if recorded before 0008."""
    applied: int
    """Events of the import the scorer has applied so far."""
    last_applied_at: datetime | None


_error_rows = msgspec.json.Decoder(list[RowError])


async def find(pool: asyncpg.Pool, unit_id: str, import_id: str) -> ImportRecord | None:
    """The unit's import of that id, with the scorer's progress; None if it has none."""
    row = await pool.fetchrow(
        """SELECT i.unit_id, i.import_id, i.status, i.skip_triggers, i.imported, i.errors,
                  i.error_rows::text AS error_rows, i.ignored_columns, i.failure,
                  i.created_at, i.completed_at, i.event_ids,
                  coalesce(p.applied, 0) AS applied, p.last_applied_at
           FROM imports AS i
           LEFT JOIN import_progress AS p
             ON p.unit_id = i.unit_id AND p.import_id = i.import_id
           WHERE i.unit_id = $1 AND i.import_id = $2""",
        unit_id,
        import_id,
    )
    if row is None:
        return None
    values = dict(row)
    values["error_rows"] = _error_rows.decode(values["error_rows"])
    values["ignored_columns"] = list(values["ignored_columns"])
    return ImportRecord(**values)


async def begin(
    pool: asyncpg.Pool,
    *,
    unit_id: str,
    import_id: str,
    idempotency_key: str | None,
    created_at: datetime,
    skip_triggers: bool,
    imported: int,
    errors: int,
    error_rows: Sequence[RowError],
    ignored_columns: Sequence[str],
    publisher: Publisher,
) -> datetime | None:
    """Record the import as publishing; None if an import of that id is completed already.

    Returns the import's stored creation time: ``created_at`` for a new row, the first
    try's when a retry takes an existing row over (a try with the same key may have
    recorded it since this one looked).
    """
    stored: datetime | None = await pool.fetchval(
        """INSERT INTO imports AS i
               (unit_id, import_id, idempotency_key, status, skip_triggers, imported, errors,
                error_rows, ignored_columns, publisher, publisher_boot, publishing_since,
                created_at)
           VALUES ($1, $2, $3, 'publishing', $4, $5, $6, $7::jsonb, $8, $9, $10, now(), $11)
           ON CONFLICT (unit_id, import_id) DO UPDATE
               SET status = 'publishing', skip_triggers = EXCLUDED.skip_triggers,
                   imported = EXCLUDED.imported, errors = EXCLUDED.errors,
                   error_rows = EXCLUDED.error_rows,
                   ignored_columns = EXCLUDED.ignored_columns,
                   failure = NULL, completed_at = NULL,
                   publisher = EXCLUDED.publisher, publisher_boot = EXCLUDED.publisher_boot,
                   publishing_since = EXCLUDED.publishing_since
               WHERE i.status <> 'completed'
           RETURNING i.created_at""",
        unit_id,
        import_id,
        idempotency_key,
        skip_triggers,
        imported,
        errors,
        msgspec.json.encode(error_rows[:ERROR_ROWS_KEPT]).decode(),
        list(ignored_columns),
        publisher.instance,
        publisher.boot,
        created_at,
    )
    return stored


async def complete(pool: asyncpg.Pool, unit_id: str, import_id: str, publisher: Publisher) -> None:
    """Every event of the import is acknowledged by Kafka.

    Only the attempt that published them completes the row: once a retry took it over,
    the retry's own publishing decides. An attempt marked failed as abandoned while it
    was in fact still publishing completes it all the same.
    """
    await pool.execute(
        """UPDATE imports SET status = 'completed', completed_at = now(), failure = NULL
           WHERE unit_id = $1 AND import_id = $2 AND publisher_boot = $3
             AND status <> 'completed'""",
        unit_id,
        import_id,
        publisher.boot,
    )


async def fail(
    pool: asyncpg.Pool, unit_id: str, import_id: str, failure: str, publisher: Publisher
) -> None:
    """Publishing stopped part way; a retry with the same key takes the import over."""
    await pool.execute(
        """UPDATE imports SET status = 'failed', failure = $3
           WHERE unit_id = $1 AND import_id = $2 AND status = 'publishing'
             AND publisher_boot = $4""",
        unit_id,
        import_id,
        failure,
        publisher.boot,
    )


ABANDONED: Final = (
    "The gateway publishing this import stopped (a crash or a restart) before Kafka "
    "acknowledged every event, so some of its events may have been published."
)
RETRY_WITH_KEY: Final = (
    " Send the same file again with the same Idempotency-Key: the import completes, and "
    "events already published are not counted twice."
)
RETRY_WITHOUT_KEY: Final = (
    " It had no Idempotency-Key, so sending the file again is a new import whose events "
    "count again: check the leads first, or send only the rows that are missing."
)


async def fail_abandoned(
    pool: asyncpg.Pool, publisher: Publisher, *, stale_after: float
) -> list[tuple[str, str]]:
    """Mark failed the imports whose publisher is gone; return their (unit, import id).

    Gone are: a previous process of this same instance (one process holds an instance
    name at a time, so any other boot of it has ended), and any attempt publishing for
    longer than ``stale_after`` seconds, more than a live publisher ever takes (its
    publishing is bounded, and ends in completed or failed).
    """
    rows = await pool.fetch(
        """UPDATE imports
           SET status = 'failed',
               failure = $4 || CASE WHEN idempotency_key IS NULL THEN $6 ELSE $5 END
           WHERE status = 'publishing'
             AND ((publisher = $1 AND publisher_boot IS DISTINCT FROM $2)
                  OR coalesce(publishing_since, created_at)
                     < now() - make_interval(secs => $3))
           RETURNING unit_id, import_id""",
        publisher.instance,
        publisher.boot,
        stale_after,
        ABANDONED,
        RETRY_WITH_KEY,
        RETRY_WITHOUT_KEY,
    )
    return [(r["unit_id"], r["import_id"]) for r in rows]
