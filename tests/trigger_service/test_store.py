"""The delivery queue's claims on the real Postgres: fair across units and triggers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from leadvibe.db import migration_files
from tests.conftest import make_tenant
from tests.trigger_service.helpers import add_firings, add_trigger
from trigger_service import store
from trigger_service.store import Delivery

pytestmark = pytest.mark.integration

URL = "http://127.0.0.1:9/hook"
PAST = datetime.now(UTC) - timedelta(hours=1)


async def _claim(
    pool: asyncpg.Pool,
    limit: int,
    *,
    per_unit: int = 2,
    per_trigger: int = 2,
    unit_in_flight: dict[str, int] | None = None,
    in_flight: dict[str, int] | None = None,
) -> list[Delivery]:
    async with pool.acquire() as conn:
        claimed = await store.claim(
            conn,
            limit=limit,
            per_trigger=per_trigger,
            in_flight=in_flight or {},
            lease_seconds=60,
            per_unit=per_unit,
            unit_in_flight=unit_in_flight or {},
        )
    return claimed.deliveries


async def test_claims_go_round_robin_across_units(pool: asyncpg.Pool) -> None:
    units = [(await make_tenant(pool, f"org{n}", "u")).unit_id for n in range(3)]
    a, b, c = units
    # Unit a's backlog is older and far longer than the look-ahead of a global "oldest first".
    flood = await add_trigger(pool, a, URL, "flood")
    await add_firings(pool, a, flood, 2500, first_due=PAST)
    for unit in (b, c):
        trigger = await add_trigger(pool, unit, URL, "hook")
        await add_firings(pool, unit, trigger, 3, first_due=PAST + timedelta(minutes=30))

    first = await _claim(pool, 3)
    assert sorted(d.firing.unit_id for d in first) == sorted(units)  # one each, not a's three
    second = await _claim(pool, 10, unit_in_flight=Counter(d.firing.unit_id for d in first))
    # Each unit may have two in flight: one more each.
    assert Counter(d.firing.unit_id for d in second) == {a: 1, b: 1, c: 1}
    # A unit at its cap gets nothing; the others go on.
    third = await _claim(pool, 10, unit_in_flight={a: 2, b: 2})
    assert Counter(d.firing.unit_id for d in third) == {c: 1}  # c's third, its last


async def test_a_units_triggers_take_turns_for_its_slots(pool: asyncpg.Pool) -> None:
    unit = (await make_tenant(pool, "acme", "u")).unit_id
    slow = await add_trigger(pool, unit, URL, "slow")
    fast = await add_trigger(pool, unit, URL, "fast")
    await add_firings(pool, unit, slow, 50, first_due=PAST)
    [fast_firing] = await add_firings(pool, unit, fast, 1, first_due=PAST + timedelta(minutes=5))

    # The slow trigger has one in flight: the unit's free slot goes to the idle trigger.
    [claimed] = await _claim(pool, 5, per_unit=2, unit_in_flight={unit: 1}, in_flight={slow: 1})
    assert claimed.firing.firing_id == fast_firing
    # A trigger at its own cap leaves the rest of the unit's slots to the others.
    assert await _claim(pool, 5, per_unit=4, unit_in_flight={unit: 2}, in_flight={slow: 2}) == []


async def test_a_claim_carries_the_active_signing_secrets(pool: asyncpg.Pool) -> None:
    unit = (await make_tenant(pool, "acme", "u")).unit_id
    old = await add_trigger(pool, unit, URL, "old")
    rotating = await add_trigger(pool, unit, URL, "rotating")
    expired = await add_trigger(pool, unit, URL, "expired")
    await pool.execute(
        "UPDATE triggers SET legacy_signature = true WHERE trigger_id = ANY($1::text[])",
        [old, rotating, expired],
    )
    await pool.execute(
        """UPDATE triggers SET secret_version = 1, previous_secret_version = 0,
               previous_secret_expires_at = now() + interval '1 hour'
           WHERE trigger_id = $1""",
        rotating,
    )
    await pool.execute(
        """UPDATE triggers SET secret_version = 3, previous_secret_version = 2,
               previous_secret_expires_at = now() - interval '1 second'
           WHERE trigger_id = $1""",
        expired,
    )
    for trigger in (old, rotating, expired):
        await add_firings(pool, unit, trigger, 1, first_due=PAST)
    claimed = {d.firing.trigger_id: d for d in await _claim(pool, 10, per_unit=10)}
    assert (claimed[old].secret_versions, claimed[old].legacy_signature) == ((0,), True)
    # During the rollover both sign, and the old header goes on while version 0 does.
    assert (claimed[rotating].secret_versions, claimed[rotating].legacy_signature) == (
        (1, 0),
        True,
    )
    # An expired previous secret signs nothing; version 0 long gone, so no old header.
    assert (claimed[expired].secret_versions, claimed[expired].legacy_signature) == ((3,), False)


async def test_triggers_made_before_0006_keep_the_old_header(pool: asyncpg.Pool) -> None:
    """Migration 0006 on a table with a trigger of the scheme before: it is marked legacy
    (the old header goes on while its version-0 secret signs), and new ones are not."""
    unit = (await make_tenant(pool, "acme", "u")).unit_id
    [sql] = [s for n, s in migration_files() if n.startswith("0006_")]
    async with pool.acquire() as conn, conn.transaction():
        # The triggers table as 0004 made it, with one trigger in it.
        await conn.execute(
            """DROP INDEX trigger_firings_queues;
               ALTER TABLE triggers DROP COLUMN secret_version,
                   DROP COLUMN previous_secret_version, DROP COLUMN previous_secret_expires_at,
                   DROP COLUMN legacy_signature"""
        )
        old = await add_trigger(conn, unit, URL, "old")
        await conn.execute(sql)
        new = await add_trigger(conn, unit, URL, "new")
        rows = await conn.fetch(
            "SELECT trigger_id, secret_version, legacy_signature FROM triggers ORDER BY name"
        )
    assert [tuple(r) for r in rows] == [(new, 0, False), (old, 0, True)]


async def test_units_take_turns_from_where_the_last_claim_stopped(pool: asyncpg.Pool) -> None:
    units = sorted([(await make_tenant(pool, f"org{n}", "u")).unit_id for n in range(3)])
    for unit in units:
        trigger = await add_trigger(pool, unit, URL, "hook")
        await add_firings(pool, unit, trigger, 5, first_due=PAST)
    served = []
    last = ""
    for _ in range(5):  # one slot at a time: the next unit each time, wrapping around
        async with pool.acquire() as conn:
            claimed = await store.claim(
                conn,
                limit=1,
                per_trigger=2,
                in_flight={},
                lease_seconds=60,
                per_unit=2,
                unit_in_flight={},
                after_unit=last,
            )
        [delivery] = claimed.deliveries
        assert claimed.last_unit == delivery.firing.unit_id
        served.append(delivery.firing.unit_id)
        last = claimed.last_unit
    assert served == [*units, *units[:2]]
