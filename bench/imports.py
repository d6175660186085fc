"""Rows 1 and 2: a 10 MB CSV through a real gateway, then through the whole pipeline.

Row 1 (import) uploads the file to ``python -m ingest_gateway`` alone and times the
upload from its first byte to the 202, with the gateway's peak RSS (VmHWM, reset before
each upload). Row 2 (end to end) runs the gateway, ``python -m scorer`` and ``python -m
trigger_service`` together, with four rulesets and 20 triggers, and times from the 202
until ``GET /imports/{id}`` shows every event applied, and until the trigger service's
stored offsets reach the end of the scored topic (it has evaluated every scored record).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.deadlines import deadline_for, wait_until
from bench.generate import generate_csv
from bench.processes import (
    SCORERS,
    CpuMeter,
    free_port,
    memory_mb,
    reset_peak_rss,
    running,
    service_env,
    tail,
)
from bench.seed import IMPORT_RULESETS, add_rulesets, add_tenant, add_triggers, make_triggers
from bench.webhooks import Receiver
from bench.world import World
from leadvibe.consuming import load_offsets
from leadvibe.settings import Settings
from schemas import Topics
from trigger_service.service import GROUP as TRIGGER_GROUP

FILE_SIZE = 10 * 1024 * 1024
"""The issue's file: 10 MB, the gateway's limit."""
WARM_UP_SIZE = 64 * 1024
"""A first, small upload that every run waits for, so no run pays for connecting."""
UPLOAD_TIMEOUT = 120.0
"""Seconds an upload may take to its answer (the gateway's own publish deadline is 30)."""
START_TIMEOUT = 60.0
"""Seconds a service has to start (and, for the consumers, join their groups)."""
FIRST_THRESHOLD = 100
THRESHOLD_STEP = 100
"""The 20 triggers' thresholds, 100 to 2,000: the file gives a lead about 40 points on
average, so about 1% of its records cross a threshold (fewer fire: some triggers want a
form_submit, some fire once)."""


@dataclass(frozen=True)
class ImportFile:
    data: bytes
    rows: int
    """Data rows (the header not counted)."""

    @classmethod
    def of_size(cls, size: int, *, seed: int = 42) -> ImportFile:
        data = generate_csv(size, seed=seed)
        return cls(data, data.count(b"\r\n") - 1)


@dataclass(frozen=True)
class ImportRun:
    seconds: float
    """From the first byte of the upload to the 202."""
    rows: int
    imported: int
    peak_rss_mb: float
    """The gateway's VmHWM over this upload."""
    idle_rss_mb: float
    cpu_us: dict[str, float]
    """CPU microseconds per row of the file over the upload: of the gateway, and of the
    local Postgres (for the run's database) and Kafka."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


@dataclass(frozen=True)
class EndToEndRun:
    upload: float
    """Seconds from the first byte of the upload to the 202 (with the consumers running)."""
    scored: float
    """Seconds from the 202 until GET /imports/{id} shows every event applied."""
    evaluated: float
    """Seconds from the 202 until the trigger service has consumed every scored record."""
    imported: int
    webhooks: int
    """Webhooks received during the run (delivery goes on after the run's end)."""
    cpu_us: dict[str, float]
    """CPU microseconds per imported event, from the upload's first byte to the trigger
    service's catching up: of the gateway, the scorers, the trigger service, and the local
    Postgres (its processes for the run's database) and Kafka."""


class Gateway:
    """A running ``python -m ingest_gateway`` and an HTTP client of it."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        client: httpx.AsyncClient,
        token: str,
        log: Path,
    ) -> None:
        self.process = process
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}
        self.log = log

    async def upload(self, data: bytes) -> tuple[float, dict[str, Any]]:
        """(seconds from the first byte to the answer, the 202's body)."""
        started = time.perf_counter()
        async with asyncio.timeout(UPLOAD_TIMEOUT):
            response = await self.client.post(
                "/import", headers=self.headers, files={"file": ("events.csv", data, "text/csv")}
            )
        elapsed = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"POST /import answered {response.status_code}: {response.text}")
        body: dict[str, Any] = response.json()
        return elapsed, body

    async def applied(self, import_id: str) -> int:
        response = await self.client.get(f"/imports/{import_id}", headers=self.headers)
        response.raise_for_status()
        applied: int = response.json()["applied"]
        return applied


@asynccontextmanager
async def gateway(env: dict[str, str], token: str, log: Path) -> AsyncIterator[Gateway]:
    """The gateway on a free loopback port, once it answers /health."""
    port = free_port()
    env = {**env, "LEADVIBE_HOST": "127.0.0.1", "LEADVIBE_PORT": str(port)}
    async with (
        running("ingest_gateway", env, log) as process,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client,
    ):

        async def health() -> int:
            if process.returncode is not None:
                raise RuntimeError(f"the gateway exited:\n{tail(log)}")
            try:
                return (await client.get("/health")).status_code
            except httpx.TransportError:
                return 0

        await wait_until(
            health, until=lambda s: s == 200, timeout=START_TIMEOUT, what="the gateway to start"
        )
        yield Gateway(process, client, token, log)


async def measure_imports(world: World, file: ImportFile, runs: int, logs: Path) -> list[ImportRun]:
    """Row 1: ``runs`` uploads of ``file`` to one gateway (after a warm-up upload)."""
    topics = await world.topics("import")
    url = await world.database("import")
    conn = await asyncpg.connect(url)
    try:
        _, token = await add_tenant(conn)
    finally:
        await conn.close()
    env = service_env(world.settings(topics, url))
    results = []
    async with gateway(env, token, logs / "gateway-import.log") as gw:
        await gw.upload(generate_csv(WARM_UP_SIZE, seed=1))
        pid = gw.process.pid
        for _ in range(runs):
            idle = memory_mb(pid, "VmRSS")
            if not reset_peak_rss(pid):
                raise RuntimeError("cannot reset the gateway's VmHWM (/proc/PID/clear_refs)")
            cpu = CpuMeter(url.rsplit("/", 1)[1], {"gateway": [pid]})
            seconds, body = await gw.upload(file.data)
            used = cpu.used()
            results.append(
                ImportRun(
                    seconds=seconds,
                    rows=body["imported"] + body["errors"],
                    imported=body["imported"],
                    peak_rss_mb=memory_mb(pid, "VmHWM"),
                    idle_rss_mb=idle,
                    cpu_us={name: 1e6 * seconds / file.rows for name, seconds in used.items()},
                )
            )
    await world.drop(url)
    return results


async def measure_end_to_end(
    world: World, file: ImportFile, runs: int, logs: Path, receiver: Receiver
) -> list[EndToEndRun]:
    """Row 2: ``runs`` uploads of ``file`` through the gateway, the scorer and the trigger
    service. Each run starts afresh (database, topics, services), so that no run inherits
    the projections or the webhook backlog of the one before and the runs are alike."""
    return [await _end_to_end(world, file, number, logs, receiver) for number in range(1, runs + 1)]


async def _end_to_end(
    world: World, file: ImportFile, number: int, logs: Path, receiver: Receiver
) -> EndToEndRun:
    topics = await world.topics(f"e2e{number}")
    url = await world.database(f"e2e{number}")
    conn = await asyncpg.connect(url)
    try:
        unit_id, token = await add_tenant(conn)
        await add_rulesets(conn, unit_id, IMPORT_RULESETS)
        triggers = make_triggers(FIRST_THRESHOLD, THRESHOLD_STEP, unit_id)
        await add_triggers(conn, triggers, receiver.url)
        env = service_env(
            world.settings(topics, url),
            LEADVIBE_WEBHOOK_SECRET="bench",
            LEADVIBE_ALLOW_PRIVATE_WEBHOOKS="true",
        )
        async with AsyncExitStack() as stack:
            gw = await stack.enter_async_context(
                gateway(env, token, logs / f"gateway-e2e{number}.log")
            )
            modules = [*(["scorer"] * SCORERS), "trigger_service"]
            services = [
                await stack.enter_async_context(
                    running(module, env, logs / f"{module}-{n}-e2e{number}.log")
                )
                for n, module in enumerate(modules, start=1)
            ]
            scored_topic = [TopicPartition(topics.scored, p) for p in range(world.partitions)]
            ends = await stack.enter_async_context(end_offsets(world.base, scored_topic))
            components = {
                "gateway": [gw.process.pid],
                "scorer": [p.pid for p in services[:SCORERS]],
                "trigger_service": [services[-1].pid],
            }
            pipeline = Pipeline(gw, conn, topics, ends, receiver, [gw.process, *services], logs)
            pipeline.measure_cpu(url.rsplit("/", 1)[1], components)
            await pipeline.run(generate_csv(WARM_UP_SIZE, seed=1), START_TIMEOUT)
            result = await pipeline.run(file.data, deadline_for(file.rows))
    finally:
        await conn.close()
    await world.drop(url)
    return result


class Pipeline:
    """The three services of row 2, and how to tell that an upload went all the way."""

    def __init__(
        self,
        gateway: Gateway,
        conn: asyncpg.Connection,
        topics: Topics,
        end_offsets: Callable[[], Awaitable[dict[int, int]]],
        receiver: Receiver,
        processes: Sequence[asyncio.subprocess.Process],
        logs: Path,
    ) -> None:
        self.gateway = gateway
        self.conn = conn
        self.topics = topics
        self.end_offsets = end_offsets
        self.receiver = receiver
        self.processes = processes
        self.logs = logs
        self.database: str | None = None
        self.components: dict[str, list[int]] = {}

    def measure_cpu(self, database: str, components: Mapping[str, Sequence[int]]) -> None:
        """Count the CPU of these processes (by name) and of the servers for ``database``."""
        self.database = database
        self.components = {name: list(pids) for name, pids in components.items()}

    def _alive(self) -> None:
        for process in self.processes:
            if process.returncode is not None:
                raise RuntimeError(f"a service exited (code {process.returncode}); see {self.logs}")

    async def run(self, data: bytes, timeout: float) -> EndToEndRun:
        """Upload ``data``; return once the trigger service has evaluated all of it."""
        webhooks = self.receiver.received
        cpu = CpuMeter(self.database, self.components) if self.database else None
        upload, body = await self.gateway.upload(data)
        accepted = time.perf_counter()
        imported: int = body["imported"]

        async def applied() -> int:
            self._alive()
            return await self.gateway.applied(body["import_id"])

        await wait_until(
            applied,
            until=lambda n: n >= imported,
            timeout=timeout,
            interval=0.01,
            what="every event of the import applied",
        )
        scored = time.perf_counter() - accepted
        # The scorer publishes a batch's scored records before it commits the batch: once
        # every event is applied, the scored topic's end offsets are final for this upload.
        ends = await self.end_offsets()

        async def evaluated() -> dict[int, int]:
            self._alive()
            return await load_offsets(self.conn, TRIGGER_GROUP, self.topics.scored)

        await wait_until(
            evaluated,
            until=lambda stored: all(stored.get(p, 0) >= end for p, end in ends.items()),
            timeout=timeout,
            interval=0.01,
            what="the trigger service to reach the end of the scored topic",
        )
        evaluated_at = time.perf_counter()
        used = cpu.used() if cpu is not None else {}
        return EndToEndRun(
            upload=upload,
            scored=scored,
            evaluated=evaluated_at - accepted,
            imported=imported,
            webhooks=self.receiver.received - webhooks,
            cpu_us={name: 1e6 * seconds / max(imported, 1) for name, seconds in used.items()},
        )


@asynccontextmanager
async def end_offsets(
    settings: Settings, partitions: Sequence[TopicPartition]
) -> AsyncIterator[Callable[[], Awaitable[dict[int, int]]]]:
    """A function giving the end offset of each of ``partitions`` (by partition number)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:

        async def read() -> dict[int, int]:
            offsets = await consumer.end_offsets(list(partitions))
            return {tp.partition: offset for tp, offset in offsets.items()}

        yield read
    finally:
        await consumer.stop()
