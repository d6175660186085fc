"""Fair delivery: one unit's hanging receivers never hold up another unit's webhooks.

The delivery worker on the real Postgres, a tarpit (a server that reads requests and
never answers) for unit A and a real receiver for unit B.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from leadvibe.settings import Settings
from tests.conftest import make_tenant
from tests.trigger_service.helpers import add_firings, add_trigger
from tests.trigger_service.receiver import Receiver, running_tarpit
from tests.waiting import wait_for
from trigger_service.delivery import Deliverer, DeliveryPolicy, webhook_client

pytestmark = pytest.mark.integration

POLICY = DeliveryPolicy(
    timeout=10.0,  # how long the tarpit holds each attempt
    concurrency=8,
    per_unit=2,
    per_trigger=2,
    backoff_base=0.1,
    max_attempts=3,
    idle_poll=0.2,
)


async def _count(pool: asyncpg.Pool, sql: str, unit_id: str) -> int:
    count: int = await pool.fetchval(sql, unit_id)
    return count


async def test_a_tarpit_unit_cannot_hold_up_another_units_webhooks(
    settings: Settings, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    a = (await make_tenant(pool, "attacker", "a")).unit_id
    b = (await make_tenant(pool, "victim", "b")).unit_id
    past = datetime.now(UTC) - timedelta(minutes=10)
    async with running_tarpit(bound=60) as tarpit:
        # A: eight triggers at the tarpit, every firing older than B's (what used to take
        # all the slots of a worker that claimed the oldest first).
        for n in range(8):
            trigger = await add_trigger(pool, a, tarpit.url, f"tarpit{n}")
            await add_firings(pool, a, trigger, 4, first_due=past)
        for n in range(2):
            trigger = await add_trigger(pool, b, receiver.url(f"/b{n}"), f"hook{n}")
            await add_firings(pool, b, trigger, 3, first_due=past + timedelta(minutes=5))

        stop = asyncio.Event()
        async with webhook_client(allow_private=True, policy=POLICY) as client:
            deliverer = Deliverer(pool, client, policy=POLICY, service_key=settings.webhook_secret)
            task = asyncio.create_task(deliverer.run(stop))
            try:
                await wait_for(
                    lambda: _count(
                        pool,
                        """SELECT count(*) FROM trigger_firings
                           WHERE unit_id = $1 AND delivery_status = 'delivered'""",
                        b,
                    ),
                    until=lambda n: n == 6,
                    what="unit B's six webhooks delivered",
                )
                # B was served while A's first attempts still hung: none of A's has ended.
                a_attempts = await _count(
                    pool, "SELECT count(*) FROM webhook_attempts WHERE unit_id = $1", a
                )
                assert a_attempts == 0
                assert tarpit.requests >= 1  # A was being tried all along...
                assert tarpit.most_held <= POLICY.per_unit  # ...with two slots at most
                assert len(receiver.received) == 6
            finally:
                # Leaving the tarpit first ends A's hanging attempts, so the stop is quick.
                await tarpit.close()
                stop.set()
                await asyncio.wait_for(task, timeout=30)
