"""The consume loop through a Postgres outage: a batch that failed is applied once the
database is back, even when the rewind to the stored offsets failed too."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from leadvibe import consuming
from leadvibe.consuming import Consumed, Rejected
from leadvibe.db import Connection
from leadvibe.producing import open_producer, publish_all
from leadvibe.service import run_consumer
from leadvibe.settings import Settings
from schemas import LeadEvent, encode
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _events(numbers: range) -> list[tuple[bytes, bytes]]:
    return [
        (
            b"k",
            encode(
                LeadEvent(
                    event_id=f"e{n}",
                    unit_id="ou_test",
                    lead_id="ld_1",
                    event_type="page_view",
                    timestamp=datetime(2025, 1, 1, tzinfo=UTC),
                    source="api",
                )
            ),
        )
        for n in numbers
    ]


async def test_a_failed_rewind_is_retried_and_no_record_is_skipped(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away while a batch is handled, and is still away when the loop
    tries to read the stored offsets to rewind: the loop must keep trying, not fetch on
    past the batch it failed (whose records would then never be applied)."""
    await pool.execute("CREATE TABLE applied (event_id text NOT NULL)")
    outage = {"happened": 0, "failures_left": 0, "loads_refused": 0}

    async def handler(conn: Connection, batch: Sequence[Consumed[LeadEvent]]) -> list[Rejected]:
        if any(c.record.event_id == "e10" for c in batch) and not outage["happened"]:
            outage["happened"] = 1
            outage["failures_left"] = 2  # the database goes away, for two more reads
            raise OSError("the database went away")
        await conn.executemany(
            "INSERT INTO applied (event_id) VALUES ($1)", [(c.record.event_id,) for c in batch]
        )
        return []

    real_load_offsets = consuming.load_offsets

    async def load_offsets(*args: object) -> dict[int, int]:
        if outage["failures_left"] > 0:
            outage["failures_left"] -= 1
            outage["loads_refused"] += 1
            raise OSError("the database is still down")
        return await real_load_offsets(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(consuming, "load_offsets", load_offsets)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consumer(
            settings,
            topic=settings.topics.events,
            group="test-outage",
            record_type=LeadEvent,
            make_handler=lambda pool, producer: handler,
            stop=stop,
        )
    )

    async def count() -> int:
        n: int = await pool.fetchval("SELECT count(*) FROM applied")
        return n

    try:
        async with open_producer(settings.kafka_bootstrap_servers) as producer:
            await publish_all(producer, settings.topics.events, _events(range(10)))
            await wait_for(count, until=lambda n: n == 10, what="the first 10 applied")
            await publish_all(producer, settings.topics.events, _events(range(10, 20)))
            await wait_for(count, until=lambda n: n == 20, what="the batch that failed applied")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert outage["loads_refused"] == 2
    applied = await pool.fetch("SELECT event_id FROM applied")
    assert sorted(r["event_id"] for r in applied) == sorted(f"e{n}" for n in range(20))
