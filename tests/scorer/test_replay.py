"""Replay and rescore against the real Kafka and Postgres, with the scorer running.

What the read API answers before a unit's projections are dropped, it answers again
after a replay; a rescore gives the scores a from-scratch computation under the new rules
gives, and fires nothing; events that arrive during either are applied exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from leadvibe.settings import Settings
from schemas import ScoredEvent
from scorer import store
from scorer.replay import replay, rescore
from scorer.scoring import RuleBook
from tests.conftest import Tenant, make_tenant
from tests.scorer.helpers import create_ruleset, get_json, import_csv, read_topic, wait_applied
from tests.trigger_service.helpers import create_trigger, received, wait_consumed
from tests.trigger_service.receiver import running_receiver
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("scorer")]

RULES = {
    "page_view": 1,
    "email_open": 3,
    "webinar_attend": 15,
    "form_submit": 10,
    "demo_request": 40,
    "unsubscribe": -20,
}
EVENT_TYPES = [*RULES, "pricing_view"]  # one type no rule names: 0 points

# The seed page's two example files (shared/seed/import-events-api.txt).
SEED_BY_LEAD_ID = """lead_id,event_type,timestamp
ld_abc123,page_view,2025-06-15T10:30:00Z
ld_abc123,email_open,2025-06-16T14:00:00Z
ld_def456,demo_request,2025-06-20T09:00:00Z
"""
SEED_BY_EMAIL = """email,event_type,timestamp
jane@acme.com,webinar_attend,2025-07-01T11:00:00Z
bob@example.com,form_submit,2025-07-02T15:30:00Z
"""


def generated_rows(count: int, *, seed: int = 11, people: int = 250) -> str:
    """A CSV of ``count`` rows about ``people`` people: by lead id (some with a cookie), by
    e-mail (some with a phone), by cookie alone (cookies shared by several people), and a
    few rows whose aliases other leads own (conflicts)."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    lines = ["lead_id,email,phone,cookie,event_type,timestamp"]
    for n in range(count):
        k = rng.randrange(people)
        lead_id = email = phone = cookie = ""
        style = rng.random()
        if style < 0.35:
            lead_id = f"ld_p{k}"
            if rng.random() < 0.3:
                cookie = f"ck-{k}-{n % 3}"
        elif style < 0.8:
            email = f"Person{k}@Example.com" if n % 2 else f"person{k}@example.com"
            if rng.random() < 0.3:
                phone = f"+1 (555) {k:04d}"
        else:
            cookie = f"ck-shared-{k % 40}"
        if n % 250 == 7:  # a lead id naming another person's e-mail: a conflict
            lead_id, email = f"ld_p{k}", f"person{(k + 1) % people}@example.com"
        when = start + timedelta(minutes=rng.randrange(300 * 24 * 60))
        event_type = rng.choice(EVENT_TYPES)
        lines.append(f"{lead_id},{email},{phone},{cookie},{event_type},{when:%Y-%m-%dT%H:%M:%SZ}")
    lines.append("ld_shared_a,shared@acme.com,,,page_view,2025-05-01T10:00:00Z")
    lines.append("ld_shared_b,Shared@Acme.com,,cookie-b,page_view,2025-05-02T10:00:00Z")
    return "\n".join(lines) + "\n"


async def ingest(gateway: httpx.AsyncClient, tenant: Tenant, events: list[dict[str, Any]]) -> None:
    response = await gateway.post("/ingest", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 202, response.text


async def applied_events(pool: asyncpg.Pool, unit_id: str) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM events WHERE unit_id = $1", unit_id)
    return count


async def _pages(gateway: httpx.AsyncClient, tenant: Tenant, path: str, name: str) -> list[Any]:
    items: list[Any] = []
    page: int | None = 1
    while page is not None:
        body = await get_json(gateway, tenant, path, page=page, limit=100)
        items.extend(body[name])
        page = body["next_page"]
    return items


WRITE_TIMES = ("created_at", "attached_at", "scored_at", "detected_at", "last_applied_at")
"""When the scorer wrote a row: a rebuild after a drop takes it from the Kafka timestamp of
the scored record that decided it, a little after the transaction's own time."""


async def read_api(gateway: httpx.AsyncClient, tenant: Tenant, imports: list[str]) -> Any:
    """Everything the read API says about the unit."""
    leads = await _pages(gateway, tenant, "/leads", "leads")
    return {
        "leads": leads,
        "lead": [await get_json(gateway, tenant, f"/leads/{lead['lead_id']}") for lead in leads],
        "aliases": [
            await get_json(gateway, tenant, f"/lead/{lead['lead_id']}/aliases") for lead in leads
        ],
        "events": await _pages(gateway, tenant, "/events", "events"),
        # Listed by detection time: after a drop, the conflicts one batch detected at one
        # instant come back with the instants their records were published, a few
        # milliseconds apart, so their order among themselves may differ.
        "conflicts": sorted(
            await _pages(gateway, tenant, "/alias-conflicts", "conflicts"),
            key=lambda c: (c["event_id"], c["alias"]["kind"], c["alias"]["value"]),
        ),
        "imports": [await get_json(gateway, tenant, f"/imports/{i}") for i in imports],
    }


def without_write_times(value: Any, times: list[tuple[str, str]]) -> Any:
    """``value`` with every write time replaced by a placeholder, collected into ``times``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in WRITE_TIMES and isinstance(item, str):
                times.append((key, item))
                out[key] = "<time>"
            else:
                out[key] = without_write_times(item, times)
        return out
    if isinstance(value, list):
        return [without_write_times(item, times) for item in value]
    return value


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_same_answers(before: Any, after: Any, *, tolerance: timedelta) -> None:
    """Identical, but for write times, which may come later by at most ``tolerance``."""
    times_before: list[tuple[str, str]] = []
    times_after: list[tuple[str, str]] = []
    assert without_write_times(after, times_after) == without_write_times(before, times_before)
    for (key, old), (_, new) in zip(times_before, times_after, strict=True):
        late = _instant(new) - _instant(old)
        assert timedelta(0) <= late <= tolerance, (key, old, new)


async def drop_projections(pool: asyncpg.Pool, unit_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for table in (
            "events",
            "leads",
            "lead_ruleset_scores",
            "aliases",
            "alias_conflicts",
            "import_progress",
        ):
            await conn.execute(f"DELETE FROM {table} WHERE unit_id = $1", unit_id)


async def _seed_unit(
    gateway: httpx.AsyncClient, tenant: Tenant, rows: int
) -> tuple[list[str], int]:
    """Rules, the seed's files, generated rows and live events with metadata, all applied.
    Returns the import ids and the number of events."""
    await create_ruleset(gateway, tenant, RULES, name="engagement")
    await create_ruleset(
        gateway,
        tenant,
        {"page_view": 2, "demo_request": 10},
        name="summer",
        starts_at="2025-06-01T00:00:00Z",
        ends_at="2025-09-01T00:00:00Z",
    )
    imports = []
    events = 0
    for csv in (SEED_BY_LEAD_ID, SEED_BY_EMAIL, generated_rows(rows)):
        accepted = await import_csv(gateway, tenant, csv)
        imports.append(accepted["import_id"])
        events += accepted["imported"]
    live: list[dict[str, Any]] = [
        {
            "lead_id": "ld_abc123",
            "event_type": "pricing_view",
            "timestamp": "2025-06-21T08:00:00Z",
            "metadata": {"url": "/pricing", "utm": {"source": "news"}, "n": 3},
        },
        {
            "aliases": [{"kind": "email", "value": "JANE@acme.com"}],
            "event_type": "demo_request",
            "metadata": {"note": "asked for a call"},
        },
    ]
    await ingest(gateway, tenant, live)
    events += len(live)
    for import_id in imports:
        await wait_applied(gateway, tenant, import_id)
    return imports, events


async def test_a_replay_after_dropping_the_projections_answers_exactly_as_before(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    imports, events = await _seed_unit(gateway, tenant, 3000)
    other = await make_tenant(pool, "acme", "sales")
    await create_ruleset(gateway, other, {"page_view": 7})
    other_import = (await import_csv(gateway, other, generated_rows(200, seed=3)))["import_id"]
    await wait_applied(gateway, other, other_import)
    await wait_for(
        lambda: applied_events(pool, tenant.unit_id), until=lambda n: n == events, timeout=60
    )
    before = await read_api(gateway, tenant, imports)
    other_before = await read_api(gateway, other, [other_import])
    assert len(before["conflicts"]) >= 2
    assert any(lead["aliases"] for lead in before["lead"])

    await drop_projections(pool, tenant.unit_id)
    assert (await get_json(gateway, tenant, "/leads"))["leads"] == []
    summary = await replay(settings, tenant.unit_id)

    assert summary.totals.events == events
    assert summary.totals.leads == len(before["leads"])
    assert summary.published == 0  # rules unchanged: every score is what the log says
    assert summary.written["events"].inserted == events
    after = await read_api(gateway, tenant, imports)
    assert_same_answers(before, after, tolerance=timedelta(seconds=10))
    assert await read_api(gateway, other, [other_import]) == other_before

    # Nothing differs any more: a second replay writes nothing, and changes no time.
    again = await replay(settings, tenant.unit_id)
    assert sum(sum(w) for w in again.written.values()) == 0
    assert await read_api(gateway, tenant, imports) == after


async def _expected_scores(pool: asyncpg.Pool, unit_id: str) -> dict[str, Any]:
    """Points, lead scores and per-ruleset scores computed from scratch: today's rules
    (the scorer's own RuleBook) over every applied event."""
    async with pool.acquire() as conn:
        book = RuleBook.of(await store.active_rulesets(conn, [unit_id]))
        events = await conn.fetch(
            "SELECT event_id, lead_id, event_type, occurred_at FROM events WHERE unit_id = $1",
            unit_id,
        )
    points: dict[str, int] = {}
    leads: dict[str, int] = {}
    by_ruleset: dict[tuple[str, str], int] = {}
    for e in events:
        score = book.score(unit_id, e["event_type"], e["occurred_at"])
        points[e["event_id"]] = score.total
        leads[e["lead_id"]] = leads.get(e["lead_id"], 0) + score.total
        for ruleset_id, p in score.by_ruleset:
            key = (e["lead_id"], ruleset_id)
            by_ruleset[key] = by_ruleset.get(key, 0) + p
    return {"points": points, "leads": leads, "by_ruleset": by_ruleset}


async def _actual_scores(pool: asyncpg.Pool, unit_id: str) -> dict[str, Any]:
    points = await pool.fetch("SELECT event_id, points FROM events WHERE unit_id = $1", unit_id)
    leads = await pool.fetch("SELECT lead_id, score FROM leads WHERE unit_id = $1", unit_id)
    by_ruleset = await pool.fetch(
        "SELECT lead_id, ruleset_id, score FROM lead_ruleset_scores WHERE unit_id = $1", unit_id
    )
    return {
        "points": {r["event_id"]: r["points"] for r in points},
        "leads": {r["lead_id"]: r["score"] for r in leads},
        "by_ruleset": {(r["lead_id"], r["ruleset_id"]): r["score"] for r in by_ruleset},
    }


async def _assert_consistent(pool: asyncpg.Pool, unit_id: str) -> None:
    """Each lead's score, event count and last running score agree with its events."""
    wrong = await pool.fetch(
        """SELECT l.lead_id, l.score, l.event_count, e.points, e.events, e.top
           FROM leads AS l
           LEFT JOIN (SELECT lead_id, sum(points) AS points, count(*) AS events,
                             max(score_after) AS top
                      FROM events WHERE unit_id = $1 GROUP BY lead_id) AS e USING (lead_id)
           WHERE l.unit_id = $1
             AND (l.score, l.event_count) IS DISTINCT FROM (e.points, e.events)""",
        unit_id,
    )
    assert wrong == []


async def test_a_rescore_gives_the_new_rules_scores_and_fires_no_trigger(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    trigger_service: asyncio.Task[None],
) -> None:
    unit = tenant.unit_id
    ruleset = await create_ruleset(gateway, tenant, RULES, name="engagement")
    accepted = await import_csv(gateway, tenant, generated_rows(1500))
    await ingest(gateway, tenant, [{"lead_id": "ld_quiet", "event_type": "email_open"}])
    events = accepted["imported"] + 1
    await wait_applied(gateway, tenant, accepted["import_id"])
    await wait_for(lambda: applied_events(pool, unit), until=lambda n: n == events)
    top = max(lead["score"] for lead in await _pages(gateway, tenant, "/leads", "leads"))
    threshold = top + 1  # nobody there yet

    async with running_receiver() as receiver:
        await create_trigger(gateway, tenant, receiver.url("/hot"), threshold, name="hot")
        await wait_consumed(pool, settings, events)
        # Page views now weigh the threshold: most leads cross it on rescoring.
        new_rules = {**RULES, "page_view": threshold, "big_deal": 2 * threshold}
        await _put_rules(gateway, tenant, ruleset, new_rules)

        summary = await rescore(settings, unit)

        assert await _actual_scores(pool, unit) == await _expected_scores(pool, unit)
        await _assert_consistent(pool, unit)
        crossed = await pool.fetchval(
            "SELECT count(*) FROM leads WHERE unit_id = $1 AND score >= $2", unit, threshold
        )
        assert crossed > 10
        assert summary.totals.leads_rescored >= crossed
        assert summary.published == summary.totals.to_publish > 0
        records = await read_topic(
            settings, settings.topics.scored, ScoredEvent, events + summary.published
        )
        assert sum(r.replay for r in records) == summary.published
        # The trigger service read every replay record, and fired on none.
        await wait_consumed(pool, settings, events + summary.published)
        assert await pool.fetchval("SELECT count(*) FROM trigger_firings") == 0

        # It does fire for a live crossing: from the rescored score, not the old one.
        hot = await pool.fetchval(
            "SELECT lead_id FROM leads WHERE unit_id = $1 AND score >= $2 LIMIT 1", unit, threshold
        )
        await ingest(
            gateway,
            tenant,
            [
                {"lead_id": hot, "event_type": "big_deal"},  # already over: no crossing
                {"lead_id": "ld_quiet", "event_type": "big_deal"},  # 3 -> over: fires
            ],
        )
        await wait_for(lambda: received(receiver), until=lambda n: n >= 1)
        await wait_consumed(pool, settings, events + summary.published + 2)
        firings = await pool.fetch("SELECT lead_id FROM trigger_firings")
        assert [f["lead_id"] for f in firings] == ["ld_quiet"]
        assert len(receiver.received) == 1


class Phases:
    """Progress that remembers when each phase began and what it counted."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.totals: dict[str, int | None] = {}

    def phase(self, name: str, total: int | None = None, what: str = "records") -> None:
        self.started[name] = time.monotonic()
        self.totals[name] = total

    def advance(self, done: int = 1) -> None:
        pass

    def end(self) -> None:
        pass


async def _keep_importing(
    gateway: httpx.AsyncClient, tenant: Tenant, stop: asyncio.Event, accepted: list[Any]
) -> None:
    """Upload small files, one after the other, until told to stop."""
    n = 0
    while not stop.is_set():
        n += 1
        body = await import_csv(gateway, tenant, generated_rows(150, seed=1000 + n))
        accepted.append((time.monotonic(), body))


async def test_events_that_arrive_during_a_replay_or_rescore_count_once(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    unit = tenant.unit_id
    ruleset = await create_ruleset(gateway, tenant, RULES, name="engagement")
    first = await import_csv(gateway, tenant, generated_rows(20_000, seed=5))
    await wait_applied(gateway, tenant, first["import_id"])

    stop = asyncio.Event()
    accepted: list[Any] = []
    importing = asyncio.create_task(_keep_importing(gateway, tenant, stop, accepted))
    try:
        await wait_for(lambda: _len(accepted), until=lambda n: n >= 2, timeout=30)
        replayed_phases = Phases()
        replayed = await replay(settings, unit, progress=replayed_phases)
        await _put_rules(gateway, tenant, ruleset, {**RULES, "page_view": 5, "email_open": 0})
        rescored_phases = Phases()
        rescored = await rescore(settings, unit, progress=rescored_phases)
        count_then = len(accepted)
        await wait_for(lambda: _len(accepted), until=lambda n: n >= count_then + 2, timeout=30)
    finally:
        stop.set()
        await importing

    # Uploads went on while each run held the scorer back, and each run caught up with
    # records the scorer had applied since the run began reading.
    for phases in (replayed_phases, rescored_phases):
        locked = phases.started["waiting for the scorer's batch in flight"]
        switched = phases.started["switching"]
        assert any(locked <= at <= switched for at, _ in accepted) or phases.totals["catching up"]
    assert (replayed_phases.totals["catching up"] or 0) + (
        rescored_phases.totals["catching up"] or 0
    ) > 0
    assert replayed.totals.events >= first["imported"]
    assert rescored.totals.leads_rescored > 0

    imports = [first, *(body for _, body in accepted)]
    total = sum(body["imported"] for body in imports)
    for body in imports:
        await wait_applied(gateway, tenant, body["import_id"])
    assert await applied_events(pool, unit) == total
    assert await _actual_scores(pool, unit) == await _expected_scores(pool, unit)
    await _assert_consistent(pool, unit)


async def _len(items: list[Any]) -> int:
    return len(items)


async def _put_rules(
    gateway: httpx.AsyncClient, tenant: Tenant, ruleset: str, rules: dict[str, int]
) -> None:
    response = await gateway.put(
        f"/rulesets/{ruleset}",
        json={
            "name": "engagement",
            "rules": [{"event_type": t, "points": p} for t, p in rules.items()],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
