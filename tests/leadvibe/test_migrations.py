"""Migrations that change existing data upgrade a database that has some (`make run`'s)."""

from __future__ import annotations

import asyncpg
import pytest

from leadvibe.db import migration_files
from tests.conftest import make_tenant

pytestmark = pytest.mark.integration


async def test_0008_keeps_earlier_imports_ids_and_drops_the_write_path_indexes(
    pool: asyncpg.Pool,
) -> None:
    """On the tables as 0003 and 0005 made them, with an import and a lead in them: the
    import keeps its uuid5 event ids (a keyed retry republishes the same ids), new ones
    get ordered ids, the events and leads keep their rows and lose the two indexes, and
    leads get room for HOT updates."""
    unit = (await make_tenant(pool, "acme", "u")).unit_id
    [sql] = [s for n, s in migration_files() if n.startswith("0008_")]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """ALTER TABLE imports DROP COLUMN event_ids;
               ALTER TABLE leads RESET (fillfactor);
               CREATE INDEX events_by_time ON events (unit_id, occurred_at DESC, event_id DESC);
               CREATE INDEX leads_by_score ON leads (unit_id, score DESC, lead_id)"""
        )
        insert_import = """INSERT INTO imports (unit_id, import_id, idempotency_key, status,
                                                skip_triggers, imported, errors)
                           VALUES ($1, $2, $3, 'failed', false, 3, 0)"""
        await conn.execute(insert_import, unit, "imp_old", "key-old")
        await conn.execute(
            "INSERT INTO leads (unit_id, lead_id, score, event_count) VALUES ($1, 'ld_1', 7, 1)",
            unit,
        )
        await conn.execute(sql)
        await conn.execute(insert_import, unit, "imp_new", "key-new")
        forms = await conn.fetch("SELECT import_id, event_ids FROM imports ORDER BY import_id")
        indexes = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('events', 'leads')"
        )
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'leads'")
        lead = await conn.fetchrow("SELECT lead_id, score FROM leads WHERE unit_id = $1", unit)
    assert [tuple(r) for r in forms] == [("imp_new", "ordered"), ("imp_old", "uuid5")]
    assert sorted(r[0] for r in indexes) == ["events_by_lead", "events_pkey", "leads_pkey"]
    assert options == ["fillfactor=80"]
    assert tuple(lead) == ("ld_1", 7)
