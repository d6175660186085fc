"""Crashes: kill -9 the scorer process (or cancel its task) at any moment, restart it, and
the projections equal those of an uninterrupted run over the same topic."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from leadvibe.consuming import Consumed
from leadvibe.producing import open_producer
from leadvibe.settings import Settings
from schemas import Alias, LeadEvent, ScoredEvent
from scorer.service import ScoreBatch, run
from tests.conftest import TEMPLATE_DB, Tenant
from tests.scorer.helpers import JUNE, event, publish, read_topic
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# What each projection holds, without the columns that say when a row was written.
SNAPSHOT = {
    "leads": "SELECT unit_id, lead_id, score, event_count, first_event_at, last_event_at"
    " FROM leads ORDER BY 1, 2",
    "lead_ruleset_scores": "SELECT * FROM lead_ruleset_scores ORDER BY 1, 2, 3",
    "aliases": "SELECT unit_id, kind, value, lead_id, event_id FROM aliases ORDER BY 1, 2, 3",
    "events": "SELECT unit_id, event_id, lead_id, event_type, occurred_at, source, skip_triggers,"
    " import_id, import_row, points, score_after, metadata FROM events ORDER BY 1, 2",
    "alias_conflicts": "SELECT unit_id, event_id, kind, value, owner_lead_id, event_lead_id"
    " FROM alias_conflicts ORDER BY 1, 2, 3, 4",
    "import_progress": "SELECT unit_id, import_id, applied FROM import_progress ORDER BY 1, 2",
}


async def _snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(database_url)
    try:
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in SNAPSHOT.items()}
    finally:
        await conn.close()


def _scenario(unit: str) -> list[LeadEvent]:
    """Leads by id with aliases attached, leads made from aliases, a conflict, an import,
    and events published twice. The unit's events share a key, hence a partition, so the
    outcome does not depend on how partitions interleave."""
    events: list[LeadEvent] = []
    for k in range(40):
        for n in range(30):
            aliases = {"email": f"lead{k}@acme.com"} if n == 0 else {}
            if n % 7 == 3:
                aliases["cookie"] = f"ck-{k}-{n}"
            e = event(unit, ["page_view", "email_open", "demo_request"][n % 3], lead_id=f"ld_{k}",
                      timestamp=JUNE.replace(day=1 + n % 28), **aliases)  # fmt: skip
            if k % 4 == 0:
                e = msgspec.structs.replace(
                    e, source="import", import_id="imp_crash", row=2 + k * 30 + n
                )
            events.append(e)
    for k in range(30):
        email = f"Person{k}@Example.com"
        for n in range(20):
            extra = {"cookie": f"pc-{k}"} if n % 3 == 1 else {"phone": f"+1 555 {k:04d}"}
            events.append(event(unit, "page_view" if n % 2 else "webinar", email=email, **extra))
    first, second = "ld_pair0", "ld_pair1"
    events += [
        event(unit, "page_view", lead_id=first, email="shared@acme.com"),
        event(unit, "page_view", lead_id=second, email="SHARED@acme.com", cookie="mine"),
    ]
    return events + events[::10]  # every tenth again: applied once


@pytest.fixture
async def scenario(settings: Settings, pool: asyncpg.Pool, tenant: Tenant) -> int:
    """Publish the scenario; return how many distinct events it has."""
    await _rulesets(pool, tenant.unit_id)
    events = _scenario(tenant.unit_id)
    await publish(settings, events)
    return len({e.event_id for e in events})


@pytest.fixture
async def reference(
    settings: Settings, pool: asyncpg.Pool, scenario: int
) -> AsyncIterator[Settings]:
    """Settings for a second database with the same units and rulesets (once the scenario
    made them), on the same topics: where the uninterrupted run goes."""
    name = f"ref_{uuid.uuid4().hex[:12]}"
    base = settings.database_url.rsplit("/", 1)[0]
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(f"{base}/{name}")
    try:
        for table in ("organizations", "org_units", "rulesets", "rules"):
            rows = await pool.fetch(f"SELECT * FROM {table}")
            await conn.copy_records_to_table(table, records=[tuple(r) for r in rows])
    finally:
        await conn.close()
    yield replace(settings, database_url=f"{base}/{name}")
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _rulesets(pool: asyncpg.Pool, unit_id: str) -> None:
    for ruleset_id, rules, starts_at in [
        ("rs_a", {"page_view": 1, "email_open": 3, "demo_request": 40}, None),
        ("rs_b", {"page_view": 2, "webinar": 15}, JUNE.replace(day=10)),
    ]:
        await pool.execute(
            "INSERT INTO rulesets (ruleset_id, unit_id, name, starts_at) VALUES ($1, $2, $1, $3)",
            ruleset_id,
            unit_id,
            starts_at,
        )
        await pool.executemany(
            "INSERT INTO rules (ruleset_id, event_type, points, position) VALUES ($1, $2, $3, 0)",
            [(ruleset_id, t, p) for t, p in rules.items()],
        )


def _applied(database_url: str) -> Any:
    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            n: int = await conn.fetchval("SELECT count(*) FROM events")
            return n
        finally:
            await conn.close()

    return count


async def _run_until_applied(settings: Settings, count: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, max_records=50))
    try:
        await wait_for(
            _applied(settings.database_url),
            until=lambda n: n >= count,
            timeout=60,
            what=f"{count} events applied",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def test_kill_9_at_any_moment_then_restart_equals_an_uninterrupted_run(
    settings: Settings, reference: Settings, scenario: int
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
        "LEADVIBE_SCORER_BATCH": "20",
        "LEADVIBE_LOG_LEVEL": "WARNING",
    }
    applied = _applied(settings.database_url)
    for fraction in (0.2, 0.6):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scorer", env=env, cwd=ROOT
        )
        at_kill = await wait_for(
            applied,
            until=lambda n, f=fraction: n >= f * scenario,  # type: ignore[misc]
            timeout=60,
            what=f"{fraction:.0%} applied",
        )
        process.kill()  # SIGKILL: no draining, no clean-up
        await process.wait()
        assert at_kill < scenario, "the scorer finished before it could be killed"
    await _run_until_applied(settings, scenario)

    await _run_until_applied(reference, scenario)
    crashed, uninterrupted = (
        await _snapshot(settings.database_url),
        await _snapshot(reference.database_url),
    )
    assert len(uninterrupted["events"]) == scenario
    assert len(uninterrupted["alias_conflicts"]) == 1
    assert uninterrupted["import_progress"][0][2] == 300
    for table in SNAPSHOT:
        assert crashed[table] == uninterrupted[table], table


async def test_cancelled_mid_batch_then_restarted_equals_an_uninterrupted_run(
    settings: Settings, reference: Settings, scenario: int
) -> None:
    applied = _applied(settings.database_url)
    for fraction in (0.3, 0.7):
        task = asyncio.create_task(run(settings, stop=asyncio.Event(), max_records=20))
        await wait_for(applied, until=lambda n, f=fraction: n >= f * scenario, timeout=60)  # type: ignore[misc]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await _run_until_applied(settings, scenario)

    await _run_until_applied(reference, scenario)
    crashed, uninterrupted = (
        await _snapshot(settings.database_url),
        await _snapshot(reference.database_url),
    )
    for table in SNAPSHOT:
        assert crashed[table] == uninterrupted[table], table


async def test_a_batch_rolled_back_after_publishing_republishes_identical_records(
    settings: Settings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """The crash between publishing the scored records and committing: the next attempt
    publishes the same records, down to the ids of leads made from aliases."""
    unit = tenant.unit_id
    batch = [
        Consumed(e, 0, n, None, 1_750_000_000_000 + n)
        for n, e in enumerate(
            [
                event(unit, "page_view", email="new@acme.com", cookie="c1"),
                event(unit, "page_view", lead_id="ld_known", phone="555"),
                event(unit, "email_open", cookie="c1"),
            ]
        )
    ]
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        handler = ScoreBatch(producer, settings.topics.scored)
        async with pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            await handler(conn, batch)
            await transaction.rollback()  # the process died before the commit
            async with conn.transaction():
                await handler(conn, batch)
    scored = await read_topic(settings, settings.topics.scored, ScoredEvent, 6)
    attempts: dict[str, list[ScoredEvent]] = {}
    for record in scored:
        attempts.setdefault(record.event_id, []).append(record)
    assert all(len(twice) == 2 and twice[0] == twice[1] for twice in attempts.values())
    created, known, found = (attempts[c.record.event_id][0] for c in batch)
    assert created.lead_created
    assert created.aliases_attached == (Alias("email", "new@acme.com"), Alias("cookie", "c1"))
    assert (known.lead_id, known.lead_created) == ("ld_known", True)
    assert (found.lead_id, found.lead_created) == (created.lead_id, False)
    assert await pool.fetchval("SELECT count(*) FROM events") == 3
