"""The trigger service started by the test itself: with settings of its own, stopped and
started again, killed mid-stream as a process of its own.

Scored records are published directly, as the scorer would publish them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from leadvibe.settings import Settings
from schemas import TriggerFired
from tests.conftest import TEST_DELIVERY_POLICY, Tenant
from tests.proxy import proxy_to
from tests.scorer.helpers import read_topic
from tests.trigger_service.helpers import (
    consumed,
    create_trigger,
    delivered,
    path_of,
    publish_scored,
    received,
    running,
    scored,
    wait_consumed,
    wait_firing,
)
from tests.trigger_service.receiver import Receiver
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


async def test_a_private_address_is_refused_at_delivery_time(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
) -> None:
    # The trigger was created while loopback was allowed; the service now refuses it.
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await publish_scored(settings, [scored(tenant.unit_id, "ld_x", 0, 60)])
    async with running(replace(settings, allow_private_webhooks=False)):
        firing = await wait_firing(
            gateway,
            tenant,
            trigger["id"],
            until=lambda f: len(f["attempts"]) >= 1,
            what="a refused attempt",
        )
    [attempt, *_] = firing["attempts"]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused: resolves to 127.0.0.1, a loopback address")
    assert receiver.received == []


async def test_pending_deliveries_resume_after_a_restart(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    receiver.fail_first = 1
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await publish_scored(settings, [scored(tenant.unit_id, "ld_r", 0, 60)])
    patient = replace(TEST_DELIVERY_POLICY, backoff_base=60.0)  # the retry: in a minute
    async with running(settings, patient):
        await wait_firing(
            gateway,
            tenant,
            trigger["id"],
            until=lambda f: len(f["attempts"]) == 1,
            what="a failed first attempt",
        )
    # Stopped with the firing pending. Made due now (as if the minute had passed):
    await pool.execute("UPDATE trigger_firings SET next_attempt_at = now()")
    async with running(settings):
        firing = await wait_firing(
            gateway,
            tenant,
            trigger["id"],
            until=delivered,
            what="the firing delivered after the restart",
        )
    assert [a["status_code"] for a in firing["attempts"]] == [500, 204]


def _service_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``python -m trigger_service`` that serves this test's world."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
        "LEADVIBE_ALLOW_PRIVATE_WEBHOOKS": "true",
        "LEADVIBE_WEBHOOK_SECRET": settings.webhook_secret,
        "LEADVIBE_WEBHOOK_TIMEOUT": "2",
        "LEADVIBE_WEBHOOK_RETRY_BASE": "0.1",
        "LEADVIBE_WEBHOOK_RETRY_MAX": "0.5",
        "LEADVIBE_LOG_LEVEL": "warning",
    }


@asynccontextmanager
async def _process(settings: Settings, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """The service as a process of its own; killed on leaving the block if still running."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "trigger_service",
            env=_service_env(settings),
            stdout=out,
            stderr=out,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_crash_mid_stream_loses_no_firing_and_doubles_none(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    once = await create_trigger(gateway, tenant, receiver.url("/once"), 50, fire_mode="once")
    always = await create_trigger(
        gateway, tenant, receiver.url("/always"), 50, fire_mode="always", name="always"
    )
    unit = tenant.unit_id
    # 200 leads crossing 50 three times each, among 40,000 records that cross nothing.
    crossing = [path_of(unit, f"ld_{n}", [30, 55, 20, 60, 45, 70]) for n in range(200)]
    filler = [scored(unit, f"ld_quiet_{n % 5000}", 0, 1) for n in range(40_000)]
    first = [r for path in crossing for r in path[:3]] + filler[:20_000]
    second = filler[20_000:] + [r for path in crossing for r in path[3:]]
    expected = {(once["id"], path[1].event_id) for path in crossing} | {
        (always["id"], path[i].event_id) for path in crossing for i in (1, 3, 5)
    }

    log = tmp_path / "trigger_service.log"
    await publish_scored(settings, first)
    async with _process(settings, log) as process:
        # Killed as soon as it has committed something, with most of the stream unread.
        await wait_for(
            lambda: consumed(pool, settings), interval=0.01, what="a first committed batch"
        )
        process.kill()
        await process.wait()
    killed_at = await consumed(pool, settings)
    assert 0 < killed_at < len(first) + len(second)

    await publish_scored(settings, second)
    async with _process(settings, log) as process:
        await wait_consumed(pool, settings, len(first) + len(second))
        await wait_for(
            lambda: _delivered(pool),
            until=lambda n: n == len(expected),
            timeout=60,
            what=f"{len(expected)} firings delivered",
        )
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0, log.read_text()

    rows = await pool.fetch("SELECT trigger_id, event_id FROM trigger_firings")
    assert len(rows) == len(expected)  # none doubled
    assert {(r["trigger_id"], r["event_id"]) for r in rows} == expected  # none lost
    # Each firing reached its receiver (a webhook in flight at the kill may come twice,
    # with the same firing id for the receiver to drop).
    assert len(receiver.firing_ids()) == len(expected)
    published = await read_topic(
        settings, settings.topics.triggers_fired, TriggerFired, len(expected)
    )
    assert {(f.trigger_id, f.event_id) for f in published} == expected


async def _delivered(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM trigger_firings WHERE delivery_status = 'delivered'"
    )
    return count


async def test_the_service_waits_out_postgres_at_start_and_mid_run(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    """The service reaches Postgres through a proxy that refuses it at start, then drops
    every connection mid-run: neither its consumer nor its delivery worker exits, and each
    firing is delivered once Postgres is back."""
    await create_trigger(gateway, tenant, receiver.url(), 50)
    db = urlsplit(settings.database_url)
    async with proxy_to(db.hostname or "127.0.0.1", db.port or 5432) as proxy:
        netloc = db.netloc.rsplit(":", 1)[0] + f":{proxy.port}"
        proxied = replace(settings, database_url=urlunsplit(db._replace(netloc=netloc)))
        async with running(proxied):
            await publish_scored(settings, [scored(tenant.unit_id, "ld_a", 0, 60)])
            await proxy.open()
            await wait_for(lambda: received(receiver), until=lambda n: n == 1, what="1st webhook")

            await proxy.close()
            await publish_scored(settings, [scored(tenant.unit_id, "ld_b", 0, 60)])
            await wait_for(lambda: consumed(pool, settings), until=lambda n: n == 1)
            await proxy.open()
            await wait_for(lambda: received(receiver), until=lambda n: n == 2, what="2nd webhook")
            await wait_consumed(pool, settings, 2)
    assert sorted(w.json["lead"]["id"] for w in receiver.received) == ["ld_a", "ld_b"]
