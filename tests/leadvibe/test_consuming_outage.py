"""The consume loop through system faults: a batch that failed is applied once the
database is back (even when the rewind to the stored offsets failed too), and a fault
of the system is never paid for with dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from leadvibe import consuming
from leadvibe.consuming import Consumed, Handler, Rejected
from leadvibe.db import Connection
from leadvibe.producing import open_producer, publish_all
from leadvibe.reading import end_offsets, open_reader
from leadvibe.service import run_consumer
from leadvibe.settings import Settings
from schemas import LeadEvent, encode
from tests.proxy import free_port, proxy_to
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

    async def count() -> int:
        n: int = await pool.fetchval("SELECT count(*) FROM applied")
        return n

    async with (
        _running(settings, handler),
        open_producer(settings.kafka_bootstrap_servers) as producer,
    ):
        await publish_all(producer, settings.topics.events, _events(range(10)))
        await wait_for(count, until=lambda n: n == 10, what="the first 10 applied")
        await publish_all(producer, settings.topics.events, _events(range(10, 20)))
        await wait_for(count, until=lambda n: n == 20, what="the batch that failed applied")
    assert outage["loads_refused"] == 2
    applied = await pool.fetch("SELECT event_id FROM applied")
    assert sorted(r["event_id"] for r in applied) == sorted(f"e{n}" for n in range(20))


@contextlib.asynccontextmanager
async def _running(settings: Settings, handler: Handler[LeadEvent]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consumer(
            settings,
            topic=settings.topics.events,
            group="test-faults",
            record_type=LeadEvent,
            make_handler=lambda pool, producer: handler,
            stop=stop,
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _applied(pool: asyncpg.Pool) -> list[str]:
    return sorted(r["event_id"] for r in await pool.fetch("SELECT event_id FROM applied"))


async def _append(conn: Connection, batch: Sequence[Consumed[LeadEvent]]) -> list[Rejected]:
    await conn.executemany(
        "INSERT INTO applied (event_id) VALUES ($1)", [(c.record.event_id,) for c in batch]
    )
    return []


async def _dead_letter_count(settings: Settings) -> int:
    async with open_reader(settings.kafka_bootstrap_servers) as reader:
        return sum((await end_offsets(reader, settings.topics.deadletter)).values())


@contextlib.asynccontextmanager
async def _unprivileged(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Settings]:
    """The settings of a role that is not a superuser (whose privileges can be revoked),
    allowed what the consume loop needs in the test's database."""
    role = f"lv_{uuid.uuid4().hex[:12]}"
    await pool.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'test'")
    await pool.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
    url = urlsplit(settings.database_url)
    netloc = f"{role}:test@{url.hostname}:{url.port}"
    try:
        yield replace(settings, database_url=urlunsplit(url._replace(netloc=netloc)))
    finally:
        await pool.execute(f"DROP OWNED BY {role}")
        await pool.execute(f"DROP ROLE {role}")


async def test_a_revoked_privilege_stops_the_partition_until_it_is_granted_back(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A systemic fault (every record would fail alike) dead-letters nothing and moves no
    offset; /health names it; repaired, every record is applied exactly once."""
    await pool.execute("CREATE TABLE applied (event_id text NOT NULL)")
    port = free_port()
    async with (
        _unprivileged(replace(settings, health_port=port), pool) as role_settings,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as health,
        open_producer(settings.kafka_bootstrap_servers) as producer,
    ):
        role = urlsplit(role_settings.database_url).username
        async with _running(role_settings, _append):
            await publish_all(producer, settings.topics.events, _events(range(10)))
            await wait_for(lambda: _applied(pool), until=lambda a: len(a) == 10, what="10 applied")
            ok = await wait_for(lambda: health.get("/health"), until=lambda r: r.status_code == 200)
            assert ok.json()["checks"]["postgres"]["ok"]

            await pool.execute(f"REVOKE INSERT ON applied FROM {role}")
            await publish_all(producer, settings.topics.events, _events(range(10, 20)))
            stopped = await wait_for(
                lambda: health.get("/health"), until=lambda r: r.status_code == 503
            )
            detail = stopped.json()["checks"]["partitions"]["detail"]
            assert stopped.json()["status"] == "unavailable"
            assert "stopped: " + settings.topics.events in detail
            assert "InsufficientPrivilegeError: permission denied for table applied" in detail
            stored = await consuming.load_offsets(pool, "test-faults", settings.topics.events)
            assert sum(stored.values()) == 10  # not moved past the records that failed
            assert len(await _applied(pool)) == 10

            await pool.execute(f"GRANT INSERT ON applied TO {role}")
            await wait_for(lambda: _applied(pool), until=lambda a: len(a) == 20, what="repaired")
            await wait_for(lambda: health.get("/health"), until=lambda r: r.status_code == 200)

    assert await _applied(pool) == sorted(f"e{n}" for n in range(20))
    assert await _dead_letter_count(settings) == 0
    stored = await consuming.load_offsets(pool, "test-faults", settings.topics.events)
    assert sum(stored.values()) == 20


async def test_connections_terminated_in_the_middle_of_a_batch_lose_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Every connection of the consumer's pool is terminated while it handles a batch (as
    a Postgres restart does): the batch is applied once the loop reconnects, exactly once."""
    await pool.execute("CREATE TABLE applied (event_id text NOT NULL)")
    terminated = asyncio.Event()

    async def handler(conn: Connection, batch: Sequence[Consumed[LeadEvent]]) -> list[Rejected]:
        await _append(conn, batch)
        if any(c.record.event_id == "e10" for c in batch) and not terminated.is_set():
            terminated.set()
            await pool.execute(  # from the test's own pool: the consumer's all go
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()"""
            )
            await conn.execute("SELECT 1")  # the handler's next statement meets the loss
        return []

    async with (
        _running(settings, handler),
        open_producer(settings.kafka_bootstrap_servers) as producer,
    ):
        await publish_all(producer, settings.topics.events, _events(range(10)))
        await wait_for(lambda: _applied(pool), until=lambda a: len(a) == 10, what="10 applied")
        await publish_all(producer, settings.topics.events, _events(range(10, 20)))
        await wait_for(lambda: _applied(pool), until=lambda a: len(a) == 20, what="20 applied")

    assert terminated.is_set()
    assert await _applied(pool) == sorted(f"e{n}" for n in range(20))
    assert await _dead_letter_count(settings) == 0


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))


async def _status(health: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await health.get("/health")
    return response.status_code, response.json()


async def test_postgres_away_at_start_and_again_later_ends_nothing_and_loses_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """The consumer reaches Postgres through a proxy that is cut at start, restored, cut
    again mid-run (every connection dropped, as a restart does) and restored: the process
    waits, /health says what is down, and every record is applied exactly once."""
    await pool.execute("CREATE TABLE applied (event_id text NOT NULL)")
    db = urlsplit(settings.database_url)
    port = free_port()
    async with (
        proxy_to(db.hostname or "127.0.0.1", db.port or 5432) as proxy,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as health,
        open_producer(settings.kafka_bootstrap_servers) as producer,
    ):
        proxied = replace(
            settings, database_url=_via(settings.database_url, proxy.port), health_port=port
        )
        async with _running(proxied, _append):
            await publish_all(producer, settings.topics.events, _events(range(10)))
            status, body = await wait_for(
                lambda: _status(health),
                until=lambda s: "yet:" in s[1]["checks"]["postgres"]["detail"],
                what="a failed connection to Postgres",
            )
            assert status == 503
            assert body["checks"]["postgres"]["ok"] is False
            assert (
                "cannot connect yet: ConnectionRefusedError" in body["checks"]["postgres"]["detail"]
            )

            await proxy.open()
            await wait_for(lambda: _applied(pool), until=lambda a: len(a) == 10, what="10 applied")
            await wait_for(lambda: _status(health), until=lambda s: s[0] == 200)

            await proxy.close()
            await publish_all(producer, settings.topics.events, _events(range(10, 20)))
            _, body = await wait_for(lambda: _status(health), until=lambda s: s[0] == 503)
            assert body["checks"]["postgres"]["ok"] is False
            await wait_for(
                lambda: _status(health),
                until=lambda s: not s[1]["checks"]["partitions"]["ok"],
                what="the partition stopped",
            )

            await proxy.open()
            await wait_for(lambda: _applied(pool), until=lambda a: len(a) == 20, what="20 applied")
            await wait_for(lambda: _status(health), until=lambda s: s[0] == 200, timeout=40)

    assert await _applied(pool) == sorted(f"e{n}" for n in range(20))
    assert await _dead_letter_count(settings) == 0


async def test_kafka_away_at_start_is_waited_for(settings: Settings, pool: asyncpg.Pool) -> None:
    """The consumer's bootstrap server refuses connections at start: the process waits,
    /health says Kafka cannot be reached, and it consumes once the broker answers."""
    await pool.execute("CREATE TABLE applied (event_id text NOT NULL)")
    host, kafka_port = settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
    port = free_port()
    async with (
        proxy_to(host, int(kafka_port)) as proxy,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as health,
        open_producer(settings.kafka_bootstrap_servers) as producer,
    ):
        proxied = replace(
            settings, kafka_bootstrap_servers=f"127.0.0.1:{proxy.port}", health_port=port
        )
        async with _running(proxied, _append):
            await publish_all(producer, settings.topics.events, _events(range(5)))
            _, body = await wait_for(
                lambda: _status(health),
                until=lambda s: "yet:" in s[1]["checks"]["kafka"]["detail"],
                what="a failed connection to Kafka",
            )
            assert body["checks"]["postgres"]["ok"] is True, body
            assert "cannot connect yet: KafkaConnectionError" in body["checks"]["kafka"]["detail"]
            await proxy.open()
            await wait_for(lambda: _applied(pool), until=lambda a: len(a) == 5, what="5 applied")
    assert await _applied(pool) == sorted(f"e{n}" for n in range(5))
