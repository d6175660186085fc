"""The world of the fault suite and how the test looks at it from outside.

Its own servers (:mod:`tests.faults.servers`), the four services as processes
(:mod:`tests.faults.fleet`), a tenant with the workload's rulesets and one trigger, a
webhook receiver; and the probes the scenario reads: import progress, the dead letters,
the scorers' health, the final state of the projections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from leadvibe.tenancy import create_token, ensure_unit
from schemas import DeadLetter, Topics, decode
from tests.faults import workload
from tests.faults.fleet import Fleet, Problems
from tests.faults.servers import Servers
from tests.trigger_service.receiver import Receiver
from tests.waiting import wait_for

TOPICS = Topics()
SCORER_ROLE = "lv_scorer"
"""The scorers' own Postgres role: not a superuser, so that a revoked privilege bites."""
START_TIMEOUT = 60.0
UPLOAD_TIMEOUT = 120.0
RETRY_AFTER_CAP = 1.0
"""The test's client retries a 503 after at most this many seconds, sooner than the
gateway's Retry-After may ask, to keep the suite short; the gateway must cope."""

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


@dataclass
class World:
    servers: Servers
    fleet: Fleet
    client: httpx.AsyncClient
    """An HTTP client of the gateway, with the tenant's token."""
    receiver: Receiver
    unit_id: str
    trigger_id: str
    threshold: int
    logs: Path
    _probe: asyncpg.Connection | None = None

    @property
    def problems(self) -> Problems:
        """What went wrong, phase by phase (services that exited among them)."""
        return self.fleet.problems

    def expect(self, holds: bool, problem: str) -> None:
        if not holds:
            self.problems.note(problem)

    # Import

    async def upload(self, data: bytes, key: str) -> dict[str, Any]:
        """POST /import with ``key`` until 202; a 503 is retried with the same key (and so
        is anything else, after noting it: a keyed retry is always safe)."""
        files = {"file": ("events.csv", data, "text/csv")}
        headers = {"Idempotency-Key": key}

        async def attempt() -> httpx.Response | None:
            try:
                response = await self.client.post(
                    "/import", headers=headers, files=files, timeout=UPLOAD_TIMEOUT
                )
            except httpx.TransportError as exc:
                self.problems.note(f"POST /import: no answer from the gateway ({exc!r})")
                await asyncio.sleep(RETRY_AFTER_CAP)
                return None
            if response.status_code == 202:
                return response
            if response.status_code == 503:
                retry_after = float(response.headers.get("retry-after", "1"))
                await asyncio.sleep(min(retry_after, RETRY_AFTER_CAP))
            else:
                self.problems.note(
                    f"POST /import answered {response.status_code}, not 202 or 503: "
                    f"{response.text[:300]}"
                )
                await asyncio.sleep(RETRY_AFTER_CAP)
            return None

        response = await wait_for(
            attempt, until=lambda r: r is not None, timeout=UPLOAD_TIMEOUT, interval=0.2,
            what="POST /import to be accepted",
        )  # fmt: skip
        assert response is not None
        body: dict[str, Any] = response.json()
        return body

    async def applied(self, import_id: str) -> int:
        """The import's applied count, read from Postgres (-1 while it does not answer).

        Over one connection, opened again only after a failure: a connection per probe
        would leave thousands of sockets in TIME_WAIT on ephemeral ports, one of which
        may be the fixed port another stack on this machine is about to listen on."""
        try:
            if self._probe is None or self._probe.is_closed():
                self._probe = await asyncpg.connect(self.servers.database_url(), timeout=2)
            n = await self._probe.fetchval(
                "SELECT applied FROM import_progress WHERE unit_id = $1 AND import_id = $2",
                self.unit_id,
                import_id,
                timeout=2,
            )
            return int(n or 0)
        except DB_ERRORS:
            if self._probe is not None:
                self._probe.terminate()
                self._probe = None
            return -1

    async def until_applied(
        self, import_id: str, at_least: int, during: str, timeout: float = 90.0
    ) -> int:
        """Wait until ``at_least`` events of the import are applied, watching the services
        meanwhile; a problem (not an error) if it does not happen in time."""

        async def probe() -> int:
            await self.fleet.watch(during)
            return await self.applied(import_id)

        try:
            return await wait_for(
                probe, until=lambda n: n >= at_least, timeout=timeout, interval=0.05,
                what=f"{at_least:,} events of the import applied",
            )  # fmt: skip
        except AssertionError as exc:
            self.problems.note(f"{during}: {exc}")
            return await self.applied(import_id)

    async def import_status(self, import_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/imports/{import_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    # Dead letters and poison

    async def dead_letters(self) -> list[DeadLetter]:
        return [decode(value, DeadLetter) for value in await read_topic(self, TOPICS.deadletter)]

    async def no_stray_dead_letters(
        self, during: str, poison: set[tuple[int, int]] | None = None
    ) -> None:
        """A problem if any record other than the poison was dead-lettered."""
        strays = [
            d for d in await self.dead_letters() if (d.partition, d.offset) not in (poison or set())
        ]
        self.expect(
            not strays,
            f"{during}: {len(strays)} record(s) of the import dead-lettered, such as "
            f"{[(d.partition, d.offset, d.reason[:150]) for d in strays[:3]]}",
        )

    async def publish_poison(self, records: list[tuple[bytes, bytes]]) -> set[tuple[int, int]]:
        """Put (key, value) records on the events topic; their (partition, offset)s."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.servers.kafka_bootstrap_servers,
            acks="all",
            max_request_size=2 * 1024 * 1024,
        )
        await producer.start()
        try:
            sent = [await producer.send_and_wait(TOPICS.events, v, key=k) for k, v in records]
        finally:
            await producer.stop()
        return {(m.partition, m.offset) for m in sent}

    # Health

    async def stopped_scorers(self) -> list[str]:
        """The scorers whose /health says a partition is stopped (a system fault)."""
        stopped = []
        for name in ("scorer-1", "scorer-2"):
            _, body = await self.fleet[name].health(self.client)
            # {"status": ..., "checks": {"partitions": {"ok": false, "detail": "stopped: ..."}}}
            checks = body.get("checks", {}) if isinstance(body, dict) else {}
            if str(checks.get("partitions", {}).get("detail", "")).startswith("stopped"):
                stopped.append(name)
        return stopped

    # The end state

    async def database(self, query: Callable[[asyncpg.Connection], Any]) -> Any:
        conn = await asyncpg.connect(self.servers.database_url())
        try:
            return await query(conn)
        finally:
            await conn.close()


async def read_topic(world: World, topic: str, partitions: int = 1) -> list[bytes]:
    """Every record's value in ``topic``, from its beginning to its end now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=world.servers.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        values: list[bytes] = []
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                values += [r.value for records in batch.values() for r in records]
        return values
    finally:
        await consumer.stop()


async def set_up_database(servers: Servers) -> tuple[str, str]:
    """The tenant (its unit id and a token), the scorers' role, and the overflow lead."""
    conn = await asyncpg.connect(servers.database_url())
    try:
        token = await create_token(conn, "faults", "main")
        _, unit_id = await ensure_unit(conn, "faults", "main")
        await conn.execute(f"CREATE ROLE {SCORER_ROLE} LOGIN")
        await conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {SCORER_ROLE}")
        await conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {SCORER_ROLE}")
    finally:
        await conn.close()
    return unit_id, token


async def seed_overflow_lead(servers: Servers, unit_id: str, ruleset_id: str) -> None:
    """The lead whose next points overflow its score (workload.OVERFLOW_SCORE)."""
    conn = await asyncpg.connect(servers.database_url())
    try:
        await conn.execute(
            "INSERT INTO leads (unit_id, lead_id, score, event_count) VALUES ($1, $2, $3, 1)",
            unit_id,
            workload.OVERFLOW_LEAD,
            workload.OVERFLOW_SCORE,
        )
        await conn.execute(
            """INSERT INTO lead_ruleset_scores (unit_id, lead_id, ruleset_id, score)
               VALUES ($1, $2, $3, $4)""",
            unit_id,
            workload.OVERFLOW_LEAD,
            ruleset_id,
            workload.OVERFLOW_SCORE,
        )
    finally:
        await conn.close()


@asynccontextmanager
async def open_world(
    servers: Servers, receiver: Receiver, logs: Path, threshold: int
) -> AsyncIterator[World]:
    """The tenant, the services started and answering, the rulesets and the trigger."""
    unit_id, token = await set_up_database(servers)
    env = {
        **servers.service_env(),
        "LEADVIBE_LOG_LEVEL": "warning",
        "LEADVIBE_WEBHOOK_SECRET": "faults-webhook-secret",
        "LEADVIBE_ALLOW_PRIVATE_WEBHOOKS": "true",
        "LEADVIBE_WEBHOOK_RETRY_BASE": "0.2",
        "LEADVIBE_WEBHOOK_RETRY_MAX": "1",
    }
    scorer_env = {
        **env,
        "DATABASE_URL": servers.database_url(SCORER_ROLE),
        # Smaller batches than in production: progress in steps of a few per cent, so each
        # fault lands while the import is being scored.
        "LEADVIBE_SCORER_BATCH": "4000",
    }
    fleet = Fleet.of(env, scorer_env, logs)
    await fleet.start()
    try:
        async with httpx.AsyncClient(
            base_url=fleet.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:

            async def healthy() -> int:
                await fleet.watch("start")
                status, _ = await fleet["gateway"].health(client)
                return status

            await wait_for(
                healthy, until=lambda s: s == 200, timeout=START_TIMEOUT, what="the gateway"
            )
            ruleset_ids = []
            for ruleset in workload.RULESETS:
                response = await client.post("/rulesets", json=ruleset)
                assert response.status_code == 201, response.text
                ruleset_ids.append(response.json()["id"])
            response = await client.post(
                "/triggers",
                json={
                    "name": "sales-ready",
                    "score_threshold": threshold,
                    "fire_mode": "once",
                    "webhook_url": receiver.url("/hook"),
                },
            )
            assert response.status_code == 201, response.text
            await seed_overflow_lead(servers, unit_id, ruleset_ids[0])
            world = World(
                servers, fleet, client, receiver, unit_id, response.json()["id"], threshold, logs
            )
            try:
                yield world
            finally:
                if world._probe is not None:
                    world._probe.terminate()
    finally:
        await fleet.stop()
