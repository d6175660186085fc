"""The trigger service on the real Kafka and Postgres, with a real receiver on loopback.

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

import asyncpg
import httpx
import pytest

from leadvibe.settings import Settings
from schemas import TriggerFired
from tests.conftest import TEST_DELIVERY_POLICY, Tenant
from tests.scorer.helpers import read_topic
from tests.trigger_service.helpers import (
    consumed,
    create_trigger,
    firings_of,
    path_of,
    publish_scored,
    running,
    scored,
    wait_consumed,
)
from tests.trigger_service.receiver import Receiver
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


async def _firing_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM trigger_firings")
    return count


@pytest.mark.usefixtures("trigger_service")
async def test_a_crossing_sends_one_signed_webhook(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50, fire_mode="once")
    record = scored(tenant.unit_id, "ld_abc", 40, 55, event_type="demo_request")
    await publish_scored(settings, [scored(tenant.unit_id, "ld_abc", 0, 40), record])

    await wait_for(lambda: _received(receiver), until=lambda n: n >= 1, what="a webhook")
    [got] = receiver.received
    assert got.signed_by(trigger["signing_secret"])
    assert not got.signed_by("test-webhook-secret")  # the trigger's own key, not the service's
    body = got.json
    assert body["id"] == got.firing_id
    assert body["type"] == "trigger.fired"
    assert body["unit_id"] == tenant.unit_id
    assert body["trigger"] == {"id": trigger["id"], "score_threshold": 50, "fire_mode": "once"}
    assert body["lead"] == {"id": "ld_abc"}
    assert body["event"] == {
        "id": record.event_id,
        "type": "demo_request",
        "timestamp": "2025-06-15T10:30:00Z",
    }
    assert (body["score_before"], body["score_after"]) == (40, 55)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-leadvibe-attempt"] == "1"

    [firing] = await wait_for(
        lambda: firings_of(gateway, tenant, trigger["id"]),
        until=lambda fs: len(fs) == 1 and fs[0]["delivery_status"] == "delivered",
        what="the firing delivered",
    )
    assert firing["id"] == got.firing_id
    assert firing["lead_id"] == "ld_abc"
    assert firing["event_id"] == record.event_id
    assert [a["status_code"] for a in firing["attempts"]] == [204]

    [fired] = await read_topic(settings, settings.topics.triggers_fired, TriggerFired, 1)
    assert fired.firing_id == got.firing_id
    assert fired.trigger_id == trigger["id"]
    assert (fired.score_before, fired.score_after) == (40, 55)


async def _received(receiver: Receiver) -> int:
    return len(receiver.received)


@pytest.mark.usefixtures("trigger_service")
async def test_flagged_records_fire_nothing(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    await create_trigger(gateway, tenant, receiver.url(), 50)
    unit = tenant.unit_id
    records = [
        scored(unit, "ld_import", 0, 100, skip_triggers=True),
        scored(unit, "ld_replay", 0, 100, replay=True),
        scored(unit, "ld_both", 0, 100, skip_triggers=True, replay=True),
    ]
    await publish_scored(settings, records)
    await wait_consumed(pool, settings, len(records))
    # A live record after them: once it has fired, every record before it was decided.
    await publish_scored(settings, [scored(unit, "ld_live", 0, 100)])
    await wait_for(lambda: _firing_count(pool), until=lambda n: n >= 1, what="the live firing")
    await wait_for(lambda: _received(receiver), until=lambda n: n >= 1, what="its webhook")

    assert await _firing_count(pool) == 1
    assert [r.json["lead"]["id"] for r in receiver.received] == ["ld_live"]


@pytest.mark.usefixtures("trigger_service")
async def test_once_and_always_over_repeated_crossings(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    once = await create_trigger(gateway, tenant, receiver.url("/once"), 50, fire_mode="once")
    always = await create_trigger(
        gateway, tenant, receiver.url("/always"), 50, fire_mode="always", name="always"
    )
    # Up through 50, down through negative points, up again, down, up: three crossings.
    records = path_of(tenant.unit_id, "ld_yoyo", [30, 55, 20, 60, 45, 70])
    await publish_scored(settings, records)
    await wait_consumed(pool, settings, len(records))
    # The lead crosses again in a later batch: the fire-once trigger still stays silent.
    later = scored(tenant.unit_id, "ld_yoyo", 10, 90)
    await publish_scored(settings, [later])
    await wait_consumed(pool, settings, len(records) + 1)

    crossings = [records[1], records[3], records[5], later]
    await wait_for(
        lambda: _received(receiver), until=lambda n: n >= 5, what="five webhooks (1 + 4)"
    )
    assert [r.json["event"]["id"] for r in receiver.at("/once")] == [records[1].event_id]
    assert sorted(r.json["event"]["id"] for r in receiver.at("/always")) == sorted(
        r.event_id for r in crossings
    )
    assert len(await firings_of(gateway, tenant, once["id"])) == 1
    assert len(await firings_of(gateway, tenant, always["id"])) == 4


@pytest.mark.usefixtures("trigger_service")
async def test_a_record_published_twice_fires_once(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50, fire_mode="always")
    record = scored(tenant.unit_id, "ld_dup", 0, 60)
    await publish_scored(settings, [record])
    await wait_consumed(pool, settings, 1)
    await publish_scored(settings, [record, record])  # the scorer republishing after a crash
    await wait_consumed(pool, settings, 3)

    await wait_for(lambda: _received(receiver), until=lambda n: n >= 1, what="the webhook")
    assert len(await firings_of(gateway, tenant, trigger["id"])) == 1
    assert await _firing_count(pool) == 1


@pytest.mark.usefixtures("trigger_service")
async def test_a_receiver_that_fails_twice_gets_one_firing_in_three_attempts(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
) -> None:
    receiver.fail_first = 2
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await publish_scored(settings, [scored(tenant.unit_id, "ld_retry", 0, 60)])

    [firing] = await wait_for(
        lambda: firings_of(gateway, tenant, trigger["id"]),
        until=lambda fs: len(fs) == 1 and fs[0]["delivery_status"] == "delivered",
        what="the firing delivered",
    )
    attempts = firing["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert [a["error"] for a in attempts] == [
        "the receiver answered HTTP 500",
        "the receiver answered HTTP 500",
        None,
    ]
    assert len(receiver.received) == 3
    assert len(receiver.firing_ids()) == 1  # the same firing id every time
    assert len({r.body for r in receiver.received}) == 1  # and the same signed bytes
    assert [r.headers["x-leadvibe-attempt"] for r in receiver.received] == ["1", "2", "3"]


@pytest.mark.usefixtures("trigger_service")
async def test_a_dead_receiver_is_given_up_after_the_last_attempt(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.fail_first = 1000
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await publish_scored(settings, [scored(tenant.unit_id, "ld_dead", 0, 60)])

    [firing] = await wait_for(
        lambda: firings_of(gateway, tenant, trigger["id"]),
        until=lambda fs: len(fs) == 1 and fs[0]["delivery_status"] == "failed",
        what="the firing given up",
    )
    assert len(firing["attempts"]) == 5  # TEST_DELIVERY_POLICY.max_attempts
    assert firing["last_error"] == "the receiver answered HTTP 500"
    assert firing["next_attempt_at"] is None


@pytest.mark.usefixtures("trigger_service")
async def test_a_slow_receiver_does_not_hold_up_other_triggers(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    receiver.delay_for["/slow"] = 1.0
    slow = await create_trigger(gateway, tenant, receiver.url("/slow"), 50, name="slow")
    await create_trigger(gateway, tenant, receiver.url("/fast"), 80, name="fast")
    unit = tenant.unit_id
    # Twelve leads cross the slow trigger's threshold first, then one crosses the fast one.
    await publish_scored(settings, [scored(unit, f"ld_{n}", 0, 60) for n in range(12)])
    await wait_for(lambda: _firing_count(pool), until=lambda n: n >= 12, what="12 firings")
    await publish_scored(settings, [scored(unit, "ld_fast", 70, 90)])

    await wait_for(
        lambda: _count_at(receiver, "/fast"), until=lambda n: n >= 1, what="the fast webhook"
    )
    delivered_slow = [
        f
        for f in await firings_of(gateway, tenant, slow["id"])
        if f["delivery_status"] == "delivered"
    ]
    # Four slow attempts at a time, a second each: the fast one did not wait for them all.
    assert len(delivered_slow) < 12
    assert len(receiver.at("/slow")) <= 12
    # Scoring went on meanwhile: the trigger service consumed every record.
    await wait_consumed(pool, settings, 13)


async def _count_at(receiver: Receiver, path: str) -> int:
    return len(receiver.at(path))


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
        [firing] = await wait_for(
            lambda: firings_of(gateway, tenant, trigger["id"]),
            until=lambda fs: len(fs) == 1 and len(fs[0]["attempts"]) >= 1,
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
        await wait_for(
            lambda: firings_of(gateway, tenant, trigger["id"]),
            until=lambda fs: len(fs) == 1 and len(fs[0]["attempts"]) == 1,
            what="a failed first attempt",
        )
    # Stopped with the firing pending. Made due now (as if the minute had passed):
    await pool.execute("UPDATE trigger_firings SET next_attempt_at = now()")
    async with running(settings):
        [firing] = await wait_for(
            lambda: firings_of(gateway, tenant, trigger["id"]),
            until=lambda fs: fs[0]["delivery_status"] == "delivered",
            what="the firing delivered after the restart",
        )
    assert [a["status_code"] for a in firing["attempts"]] == [500, 204]


@pytest.mark.usefixtures("trigger_service")
async def test_inactive_and_deleted_triggers_do_not_fire(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    await create_trigger(gateway, tenant, receiver.url("/off"), 50, active=False, name="off")
    deleted = await create_trigger(gateway, tenant, receiver.url("/gone"), 50, name="gone")
    response = await gateway.delete(f"/triggers/{deleted['id']}", headers=tenant.headers)
    assert response.status_code == 204
    await create_trigger(gateway, tenant, receiver.url("/on"), 50, name="on")
    await publish_scored(settings, [scored(tenant.unit_id, "ld_1", 0, 60)])

    await wait_for(lambda: _received(receiver), until=lambda n: n >= 1, what="a webhook")
    await wait_consumed(pool, settings, 1)
    assert [r.path for r in receiver.received] == ["/on"]
    assert await _firing_count(pool) == 1


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


@pytest.mark.usefixtures("trigger_service")
async def test_deleting_a_trigger_cancels_its_pending_deliveries(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    receiver.fail_first = 1000
    doomed = await create_trigger(gateway, tenant, receiver.url("/doomed"), 50, name="doomed")
    await publish_scored(settings, [scored(tenant.unit_id, "ld_1", 0, 60)])
    await wait_for(
        lambda: firings_of(gateway, tenant, doomed["id"]),
        until=lambda fs: len(fs) == 1 and len(fs[0]["attempts"]) >= 2,
        what="failing attempts",
    )
    response = await gateway.delete(f"/triggers/{doomed['id']}", headers=tenant.headers)
    assert response.status_code == 204
    tried = len(receiver.at("/doomed"))

    # A later firing of another trigger goes out; the deleted one's retries do not.
    receiver.fail_first = 0
    marker = await create_trigger(gateway, tenant, receiver.url("/marker"), 50, name="marker")
    await publish_scored(settings, [scored(tenant.unit_id, "ld_2", 0, 60)])
    await wait_for(
        lambda: firings_of(gateway, tenant, marker["id"]),
        until=lambda fs: len(fs) == 1 and fs[0]["delivery_status"] == "delivered",
        what="the marker delivered",
    )
    assert len(receiver.at("/doomed")) <= tried + 1  # at most the one in flight at the delete
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM trigger_firings WHERE trigger_id = $1", doomed["id"]
        )
        == 0
    )
    assert (
        await pool.fetchval(
            """SELECT count(*) FROM webhook_attempts a
           WHERE NOT EXISTS (SELECT 1 FROM trigger_firings f WHERE f.firing_id = a.firing_id)"""
        )
        == 0
    )
