"""What the benchmark's databases hold before a run: a unit, its rulesets and triggers.

Written straight into the tables, as the gateway's API would leave them, so that the
figures measure the pipeline and not the set-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg

from bench.world import World
from leadvibe.db import Connection
from leadvibe.tenancy import create_token, ensure_unit
from trigger_service.decisions import Trigger

UNIT = "ou_bench"
"""The unit of the events and records the benchmark publishes itself."""


class RulesetSpec(NamedTuple):
    ruleset_id: str
    starts_at: datetime | None
    ends_at: datetime | None
    rules: Mapping[str, int]
    """event type -> points"""


RULESETS = [
    RulesetSpec("rs_web", None, None, {"page_view": 1, "form_submit": 20}),
    RulesetSpec("rs_email", None, None, {"email_open": 2, "email_click": 5, "unsubscribe": -30}),
    RulesetSpec(
        "rs_summer",
        datetime(2025, 6, 1, tzinfo=UTC),
        datetime(2025, 9, 1, tzinfo=UTC),
        {"webinar_attend": 40, "page_view": 1},
    ),
]
"""Three rulesets, one of them valid only for events of the summer."""

IMPORT_RULESETS = [
    *RULESETS,
    RulesetSpec("rs_sales", None, None, {"demo_request": 50, "pricing_view": 5}),
]
"""The rulesets of an imported file's unit: every event type of bench.generate scores."""


def make_triggers(first: int, step: int, unit_id: str = UNIT) -> list[Trigger]:
    """20 thresholds, ``first``, ``first + step``...; every third fire-once, every fifth for
    one event type."""
    return [
        Trigger(
            f"trg_{n:02d}",
            unit_id,
            first + step * n,
            "form_submit" if n % 5 == 4 else None,
            once=n % 3 == 0,
        )
        for n in range(20)
    ]


async def add_unit(conn: Connection, unit_id: str = UNIT) -> None:
    """An organisation with the unit ``unit_id``."""
    await conn.execute("INSERT INTO organizations (org_id, name) VALUES ('org_b', 'bench')")
    await conn.execute(
        "INSERT INTO org_units (unit_id, org_id, name) VALUES ($1, 'org_b', 'bench')", unit_id
    )


@asynccontextmanager
async def unit_database(
    world: World, purpose: str
) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A fresh database of ``purpose`` holding :data:`UNIT`: its URL and a connection to it,
    closed and the database dropped when the block ends."""
    url = await world.database(purpose)
    try:
        conn = await asyncpg.connect(url)
        try:
            await add_unit(conn)
            yield url, conn
        finally:
            await conn.close()
    finally:
        await world.drop(url)


async def add_tenant(conn: Connection) -> tuple[str, str]:
    """(unit id, API token) of a new organisation and unit, as ``leadvibe token create``."""
    token = await create_token(conn, "bench", "bench")
    _, unit_id = await ensure_unit(conn, "bench", "bench")
    return unit_id, token


async def add_rulesets(conn: Connection, unit_id: str, rulesets: Sequence[RulesetSpec]) -> None:
    for ruleset in rulesets:
        await conn.execute(
            """INSERT INTO rulesets (ruleset_id, unit_id, name, starts_at, ends_at)
               VALUES ($1, $2, $1, $3, $4)""",
            ruleset.ruleset_id,
            unit_id,
            ruleset.starts_at,
            ruleset.ends_at,
        )
        await conn.executemany(
            """INSERT INTO rules (ruleset_id, event_type, points, position)
               VALUES ($1, $2, $3, 0)""",
            [(ruleset.ruleset_id, t, p) for t, p in ruleset.rules.items()],
        )


async def add_triggers(conn: Connection, triggers: Sequence[Trigger], webhook_url: str) -> None:
    """The triggers, active, all posting to ``webhook_url``."""
    await conn.executemany(
        """INSERT INTO triggers (trigger_id, unit_id, name, score_threshold, event_type,
               fire_mode, webhook_url)
           VALUES ($1, $2, $1, $3, $4, $5, $6)""",
        [
            (
                t.trigger_id,
                t.unit_id,
                t.score_threshold,
                t.event_type,
                "once" if t.once else "always",
                webhook_url,
            )
            for t in triggers
        ],
    )
