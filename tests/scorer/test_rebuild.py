"""The rebuild's SQL on staged records: what the second pass rebuilds, while the scorer
waits, equals what one pass over every record builds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from leadvibe.settings import Settings
from schemas import Alias, ConflictingAlias, LeadEvent, ScoredEvent, encode
from scorer import rebuild
from scorer.log_rows import ScoreIds, Units, stage_facts, stage_scored
from scorer.scoring import RuleBook, Ruleset
from tests.scorer.helpers import LogRecord

pytestmark = pytest.mark.integration

UNIT = "ou_1"
JUNE = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
BOOK = RuleBook.of([Ruleset("rs_a", UNIT, {"page_view": 2, "demo_request": 10})])
TABLES = (
    "rp_new_events",
    "rp_new_leads",
    "rp_new_ruleset_scores",
    "rp_new_aliases",
    "rp_new_conflicts",
    "rp_new_imports",
)


def scored(offset: int, event_id: str, lead_id: str, **fields: Any) -> LogRecord:
    values: dict[str, Any] = {
        "event_id": event_id,
        "unit_id": UNIT,
        "lead_id": lead_id,
        "event_type": "page_view",
        "timestamp": JUNE,
        "points": 2,
        "score_before": 0,
        "score_after": 2,
        "skip_triggers": False,
        "source": "import",
        "import_id": "imp_1",
        "alias_conflicts": (),
        **fields,
    }
    return LogRecord(0, offset, 1_750_000_000_000 + offset, None, encode(ScoredEvent(**values)))


def fact(offset: int, event_id: str, partition: int = 0, **metadata: Any) -> LogRecord:
    event = LeadEvent(
        event_id=event_id, unit_id=UNIT, event_type="x", timestamp=JUNE, source="api",
        metadata=metadata,
    )  # fmt: skip
    return LogRecord(partition, offset, 0, None, encode(event))


FIRST = [
    scored(0, "e1", "ld_a", lead_created=True),
    scored(1, "e2", "ld_a", event_type="demo_request"),
    scored(2, "e3", "ld_b", lead_created=True, aliases_attached=(Alias("email", "b@x.y"),)),
    # Published, then its batch rolled back: not applied as far as the first pass knows.
    scored(3, "e4", "ld_c", lead_created=True, aliases_attached=(Alias("email", "c@x.y"),)),
    scored(4, "e7", "ld_e", lead_created=True),
]
FIRST_FACTS = [
    fact(0, "e1", url="/a"), fact(1, "e2"), fact(2, "e3"), fact(3, "e4"), fact(0, "e7", 1),
]  # fmt: skip
SECOND = [
    scored(5, "e5", "ld_a", event_type="demo_request"),  # a new event of a known lead
    scored(6, "e2", "ld_a", event_type="demo_request", points=10, replay=True),
    scored(
        7,
        "e6",
        "ld_d",
        lead_created=True,
        alias_conflicts=(ConflictingAlias(Alias("email", "b@x.y"), "ld_b"),),
    ),
]
SECOND_FACTS = [fact(5, "e5"), fact(6, "e6", n=1)]


async def _stage(
    conn: asyncpg.Connection,
    scores: ScoreIds,
    records: Sequence[LogRecord],
    facts: Sequence[LogRecord],
) -> None:
    units = Units([UNIT])
    staged = stage_scored(records, units, BOOK, scores)
    await rebuild.copy_rows(conn, "rp_scored", rebuild.SCORED_COLUMNS, staged.scored)
    await rebuild.copy_rows(conn, "rp_attached", rebuild.ATTACHED_COLUMNS, staged.attached)
    await rebuild.copy_rows(conn, "rp_conflicts", rebuild.CONFLICT_COLUMNS, staged.conflicts)
    rows, _ = stage_facts(facts, units)
    await rebuild.copy_rows(conn, "rp_facts", rebuild.FACT_COLUMNS, rows)
    await rebuild.stage_scores(conn, scores.totals, scores.parts)


async def _staged(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(tuple(r) for r in await conn.fetch(f"SELECT * FROM {table}"))
        for table in TABLES
    }


async def test_the_second_pass_rebuilds_what_one_pass_over_everything_builds(
    settings: Settings,
) -> None:
    conn = await asyncpg.connect(settings.database_url, server_settings=rebuild.SESSION_SETTINGS)
    try:
        await rebuild.create_staging(conn)
        scores = ScoreIds()
        await _stage(conn, scores, FIRST, FIRST_FACTS)
        await rebuild.stage_offsets(conn, {0: 3, 1: 1})  # e4 (offset 3) not applied yet
        await rebuild.build(conn)
        first = await _staged(conn)
        assert {r[1] for r in first["rp_new_events"]} == {"e1", "e2", "e3", "e7"}

        await rebuild.begin_second_pass(conn)
        await _stage(conn, scores, SECOND, SECOND_FACTS)
        await rebuild.stage_offsets(conn, {0: 7, 1: 1})  # now it is, and so are e5 and e6
        rebuilt = await rebuild.rebuild_affected(conn)
        incremental = await _staged(conn)
        assert rebuilt == (3, 5)  # ld_a (e1, e2, e5), ld_c (e4), ld_d (e6); not ld_b, ld_e

        await rebuild.create_staging(conn)
        await _stage(conn, ScoreIds(), FIRST + SECOND, FIRST_FACTS + SECOND_FACTS)
        await rebuild.stage_offsets(conn, {0: 7, 1: 1})
        await rebuild.build(conn)
        assert incremental == await _staged(conn)
    finally:
        await conn.close()

    events = {r[1]: r for r in incremental["rp_new_events"]}
    assert set(events) == {"e1", "e2", "e3", "e4", "e5", "e6", "e7"}
    # ld_a: e1 (2), e2 (10, in its original place), e5 (10): running 2, 12, 22.
    assert [events[e][10] for e in ("e1", "e2", "e5")] == [2, 12, 22]
    assert events["e1"][11] == '{"url": "/a"}'  # jsonb, as Postgres writes it
    assert sorted((r[1], r[2]) for r in incremental["rp_new_leads"]) == [
        ("ld_a", 22), ("ld_b", 2), ("ld_c", 2), ("ld_d", 2), ("ld_e", 2),
    ]  # fmt: skip
    assert [r[1:4] for r in incremental["rp_new_aliases"]] == [
        ("email", "b@x.y", "ld_b"),
        ("email", "c@x.y", "ld_c"),
    ]
    assert [r[1:6] for r in incremental["rp_new_conflicts"]] == [
        ("e6", "email", "b@x.y", "ld_b", "ld_d")
    ]
    assert [r[1:3] for r in incremental["rp_new_imports"]] == [("imp_1", 7)]
