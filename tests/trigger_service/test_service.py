"""The trigger service on the real Kafka and Postgres, with a real receiver on loopback.

Scored records are published directly, as the scorer would publish them, to the service
that the ``trigger_service`` fixture runs in process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import asyncpg
import httpx
import pytest

from leadvibe.settings import Settings
from schemas import TriggerFired
from tests.conftest import Tenant
from tests.scorer.helpers import read_topic
from tests.trigger_service.helpers import (
    create_trigger,
    delivered,
    firings_of,
    path_of,
    publish_scored,
    received,
    scored,
    wait_consumed,
    wait_firing,
)
from tests.trigger_service.receiver import Received, Receiver
from tests.waiting import wait_for
from trigger_service.webhooks import legacy_signing_secret, signing_secret, standard_secret

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("trigger_service")]


async def _firing_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM trigger_firings")
    return count


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

    await wait_for(lambda: received(receiver), until=lambda n: n >= 1, what="a webhook")
    [got] = receiver.received
    # Verified as a receiver would, with the standardwebhooks library.
    assert got.signed_by(trigger["signing_secret"])
    # The trigger's own key, not the service's nor another trigger's.
    assert not got.signed_by("whsec_" + base64.b64encode(b"test-webhook-secret").decode())
    assert not got.signed_by(signing_secret(settings.webhook_secret, "trg_other"))
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert "x-leadvibe-signature" not in got.headers  # the old scheme's, for old triggers only
    body = got.json
    assert body["id"] == got.firing_id == got.headers["webhook-id"]
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

    firing = await wait_firing(
        gateway, tenant, trigger["id"], until=delivered, what="the firing delivered"
    )
    assert firing["id"] == got.firing_id
    assert firing["lead_id"] == "ld_abc"
    assert firing["event_id"] == record.event_id
    assert [a["status_code"] for a in firing["attempts"]] == [204]

    [fired] = await read_topic(settings, settings.topics.triggers_fired, TriggerFired, 1)
    assert fired.firing_id == got.firing_id
    assert fired.trigger_id == trigger["id"]
    assert (fired.score_before, fired.score_after) == (40, 55)


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
    await wait_for(lambda: received(receiver), until=lambda n: n >= 1, what="its webhook")

    assert await _firing_count(pool) == 1
    assert [r.json["lead"]["id"] for r in receiver.received] == ["ld_live"]


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
    await wait_for(lambda: received(receiver), until=lambda n: n >= 5, what="five webhooks (1 + 4)")
    assert [r.json["event"]["id"] for r in receiver.at("/once")] == [records[1].event_id]
    assert sorted(r.json["event"]["id"] for r in receiver.at("/always")) == sorted(
        r.event_id for r in crossings
    )
    assert len(await firings_of(gateway, tenant, once["id"])) == 1
    assert len(await firings_of(gateway, tenant, always["id"])) == 4


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

    await wait_for(lambda: received(receiver), until=lambda n: n >= 1, what="the webhook")
    assert len(await firings_of(gateway, tenant, trigger["id"])) == 1
    assert await _firing_count(pool) == 1


async def test_a_receiver_that_fails_twice_gets_one_firing_in_three_attempts(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
) -> None:
    receiver.fail_first = 2
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await publish_scored(settings, [scored(tenant.unit_id, "ld_retry", 0, 60)])

    firing = await wait_firing(
        gateway, tenant, trigger["id"], until=delivered, what="the firing delivered"
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


async def test_a_dead_receiver_is_given_up_after_the_last_attempt(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.fail_first = 1000
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await publish_scored(settings, [scored(tenant.unit_id, "ld_dead", 0, 60)])

    firing = await wait_firing(
        gateway,
        tenant,
        trigger["id"],
        until=lambda f: f["delivery_status"] == "failed",
        what="the firing given up",
    )
    assert len(firing["attempts"]) == 5  # TEST_DELIVERY_POLICY.max_attempts
    assert firing["last_error"] == "the receiver answered HTTP 500"
    assert firing["next_attempt_at"] is None


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
        lambda: received(receiver, "/fast"), until=lambda n: n >= 1, what="the fast webhook"
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

    await wait_for(lambda: received(receiver), until=lambda n: n >= 1, what="a webhook")
    await wait_consumed(pool, settings, 1)
    assert [r.path for r in receiver.received] == ["/on"]
    assert await _firing_count(pool) == 1


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
    await wait_firing(
        gateway,
        tenant,
        doomed["id"],
        until=lambda f: len(f["attempts"]) >= 2,
        what="failing attempts",
    )
    response = await gateway.delete(f"/triggers/{doomed['id']}", headers=tenant.headers)
    assert response.status_code == 204
    tried = len(receiver.at("/doomed"))

    # A later firing of another trigger goes out; the deleted one's retries do not.
    receiver.fail_first = 0
    marker = await create_trigger(gateway, tenant, receiver.url("/marker"), 50, name="marker")
    await publish_scored(settings, [scored(tenant.unit_id, "ld_2", 0, 60)])
    await wait_firing(gateway, tenant, marker["id"], until=delivered, what="the marker delivered")
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


async def test_retries_keep_the_webhook_id_and_sign_a_fresh_timestamp(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await publish_scored(settings, [scored(tenant.unit_id, "ld_1", 0, 60)])
    await wait_for(lambda: received(receiver), until=lambda n: n >= 2, what="a retried webhook")
    first, second = receiver.received[:2]
    assert first.firing_id == second.firing_id  # receivers de-duplicate on webhook-id
    assert first.body == second.body
    assert int(second.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"])
    assert (first.headers["x-leadvibe-attempt"], second.headers["x-leadvibe-attempt"]) == ("1", "2")
    assert first.signed_by(trigger["signing_secret"])
    assert second.signed_by(trigger["signing_secret"])


async def test_a_rotated_secret_signs_beside_the_old_one_until_revoked(
    settings: Settings, gateway: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    old = trigger["signing_secret"]
    secret_path = f"/triggers/{trigger['id']}/secret"

    async def cross(lead_id: str) -> Received:
        count = len(receiver.received)
        await publish_scored(settings, [scored(tenant.unit_id, lead_id, 0, 60)])
        await wait_for(lambda: received(receiver), until=lambda n: n > count, what="a webhook")
        return receiver.received[-1]

    before = await cross("ld_1")
    assert before.signed_by(old)
    assert len(before.headers["webhook-signature"].split(" ")) == 1

    rotated = await gateway.post(f"{secret_path}/rotate", headers=tenant.headers)
    new = rotated.json()["signing_secret"]
    during = await cross("ld_2")
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.signed_by(new)  # a receiver already on the new secret
    assert during.signed_by(old)  # and one that has not moved yet

    revoked = await gateway.delete(f"{secret_path}/previous", headers=tenant.headers)
    assert revoked.status_code == 204
    after = await cross("ld_3")
    assert after.signed_by(new)
    assert not after.signed_by(old)


async def test_a_trigger_made_before_0006_also_gets_the_old_header(
    settings: Settings,
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    pool: asyncpg.Pool,
) -> None:
    trigger = await create_trigger(gateway, tenant, receiver.url(), 50)
    await pool.execute(
        "UPDATE triggers SET legacy_signature = true WHERE trigger_id = $1", trigger["id"]
    )
    # The secret as the gateway showed it then: the same key, URL-safe and unpadded.
    shown_then = legacy_signing_secret(settings.webhook_secret, trigger["id"])
    await publish_scored(settings, [scored(tenant.unit_id, "ld_1", 0, 60)])
    await wait_for(lambda: received(receiver), until=lambda n: n >= 1, what="a webhook")
    [got] = receiver.received
    expected = hmac.new(shown_then.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-leadvibe-signature"] == f"sha256={expected}"  # old receivers go on
    assert got.signed_by(standard_secret(shown_then))  # the same secret, re-encoded
    assert standard_secret(shown_then) == trigger["signing_secret"]
