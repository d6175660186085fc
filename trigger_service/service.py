"""The trigger service: consume scored records, record firings, deliver webhooks.

Two loops share one stop event:

- the consume loop (group ``leadvibe-triggers`` on ``leadvibe.scored``) decides the
  firings of each batch and records them, pending delivery, in the transaction that
  stores the batch's offsets, then publishes them to ``leadvibe.triggers.fired``; a
  crash before the commit replays the batch and finds the same firings (their ids are
  derived from trigger and event), a crash after it resumes past them;
- the delivery worker (:mod:`trigger_service.delivery`) posts the pending firings.

A record published again by the scorer fires nothing new: firings are unique per
(trigger, event). A firing may reach ``leadvibe.triggers.fired`` twice, if the service
dies between publishing and committing; it carries the same ``firing_id`` both times.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from leadvibe.backoff import Backoff, pause
from leadvibe.consuming import Consumed, Handler, Rejected, stop_on_signals
from leadvibe.db import Connection, open_pool
from leadvibe.failures import describe
from leadvibe.producing import publish_batched
from leadvibe.service import run_consumer
from leadvibe.settings import Settings, SettingsError
from schemas import ScoredEvent, TriggerFired, encode
from schemas.ids import derived_id
from trigger_service import store
from trigger_service.decisions import Crossing, TriggerIndex, once_pairs, select
from trigger_service.delivery import Deliverer, DeliveryPolicy, webhook_client
from trigger_service.store import FiringRow

log = logging.getLogger(__name__)

GROUP = "leadvibe-triggers"

BATCH = 20_000
"""Records the service takes from Kafka per batch (at most). Each batch costs a few round
trips whatever its size (its offsets locked and stored, the active triggers read, the
commit): 20,000 rather than 5,000 spreads them over four times as many records."""

SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}
"""Postgres settings of the service's connections.

asyncpg prepares every statement, and Postgres keeps a generic plan for a prepared
statement after five runs. Made while the firings table is nearly empty, that plan scans
it sequentially, and keeps doing so as it grows: the fire-once lookup took 34 ms a batch
instead of 1 ms in the benchmark. Planning every run, for the sizes of the moment, costs
a fraction of a millisecond per statement, and the service runs a few per batch.
"""


def firing_id(trigger_id: str, event_id: str) -> str:
    """The same (trigger, event) always gives the same firing id."""
    return "fir_" + derived_id("firing", trigger_id, event_id)


def firing_row(crossing: Crossing, fired_at: datetime) -> FiringRow:
    trigger, record = crossing
    return FiringRow(
        firing_id=firing_id(trigger.trigger_id, record.event_id),
        unit_id=record.unit_id,
        trigger_id=trigger.trigger_id,
        lead_id=record.lead_id,
        event_id=record.event_id,
        event_type=record.event_type,
        occurred_at=record.timestamp,
        score_threshold=trigger.score_threshold,
        score_before=record.score_before,
        score_after=record.score_after,
        once=trigger.once,
        fired_at=fired_at,
    )


def fired_record(firing: FiringRow) -> tuple[bytes, bytes]:
    """The ``leadvibe.triggers.fired`` record of a firing, keyed by its lead."""
    record = TriggerFired(
        firing_id=firing.firing_id,
        trigger_id=firing.trigger_id,
        unit_id=firing.unit_id,
        lead_id=firing.lead_id,
        event_id=firing.event_id,
        event_type=firing.event_type,
        score_before=firing.score_before,
        score_after=firing.score_after,
        fired_at=firing.fired_at,
    )
    return f"{firing.unit_id}:{firing.lead_id}".encode(), encode(record)


def firings_handler(settings: Settings, producer: AIOKafkaProducer) -> Handler[ScoredEvent]:
    """The batch handler: decide, record, publish; inside the consume loop's transaction."""

    async def handle(conn: Connection, batch: Sequence[Consumed[ScoredEvent]]) -> list[Rejected]:
        records = [item.record for item in batch]
        triggers = await store.active_triggers(conn, {r.unit_id for r in records})
        if not triggers:
            return []
        crossings = TriggerIndex(triggers).crossings(records)
        if not crossings:
            return []
        already_fired = await store.fired_before(conn, once_pairs(crossings))
        fired_at = datetime.now(UTC)
        firings = [firing_row(c, fired_at) for c in select(crossings, already_fired)]
        recorded = await store.insert_firings(conn, firings)
        if recorded:
            await publish_batched(
                producer,
                settings.topics.triggers_fired,
                [fired_record(f) for f in firings if f.firing_id in recorded],
            )
        return []

    return handle


async def deliver(settings: Settings, policy: DeliveryPolicy, stop: asyncio.Event) -> None:
    """The delivery worker, with a pool and an HTTP client of its own, until ``stop``.

    It outlives the database: when Postgres cannot be reached (at start, or in a way the
    worker does not ride out itself, such as a restart's ``CannotConnectNowError``), the
    worker is started again after a backoff. Pending firings wait in the table meanwhile;
    one claimed when the worker failed is due again when its lease ends.
    """
    backoff = Backoff()
    failing: str | None = None
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with (
                open_pool(
                    settings.database_url, max_size=4, server_settings=SERVER_SETTINGS
                ) as pool,
                webhook_client(
                    allow_private=settings.allow_private_webhooks, policy=policy
                ) as client,
            ):
                deliverer = Deliverer(
                    pool, client, policy=policy, service_key=settings.webhook_secret
                )
                await deliverer.run(stop)
        except Exception as exc:
            if time.monotonic() - started > backoff.cap:
                backoff.reset()  # it had been running: start again from the shortest delay
            if describe(exc) != failing:  # once per cause, not at every retry
                log.error("webhook delivery stopped (%s); restarting it", describe(exc))
            failing = describe(exc)
            await pause(stop, backoff.next_delay())


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    policy: DeliveryPolicy | None = None,
    max_records: int = BATCH,
) -> None:
    """Run the service until ``stop`` is set (default: until SIGTERM or SIGINT).

    The batch in hand is committed and the webhook attempts in flight are finished before
    it returns. ``policy`` defaults to :meth:`DeliveryPolicy.from_env`.
    """
    if not settings.webhook_secret:
        raise SettingsError(
            "LEADVIBE_WEBHOOK_SECRET is not set; webhooks cannot be signed without it"
        )
    policy = policy or DeliveryPolicy.from_env()
    stop = stop or stop_on_signals()

    def make_handler(pool: asyncpg.Pool, producer: AIOKafkaProducer) -> Handler[ScoredEvent]:
        return firings_handler(settings, producer)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(
            run_consumer(
                settings,
                topic=settings.topics.scored,
                group=GROUP,
                record_type=ScoredEvent,
                make_handler=make_handler,
                stop=stop,
                max_records=max_records,
                # Firings are published and awaited inside the batch's transaction: a
                # linger would only add its milliseconds to every batch that fires.
                producer_linger_ms=0,
                server_settings=SERVER_SETTINGS,
            )
        )
        tasks.create_task(deliver(settings, policy, stop))
