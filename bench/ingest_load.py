"""Row 7: live ingest under load (issue 14), with :mod:`bench.load` as the clients.

In one world (database and topics of its own), with the gateway as ``make run`` starts it:

1. the whole stack running (the gateway, one scorer per core, the trigger service):
   ``GET /leads?limit=1`` with 32 clients, then ``POST /ingest`` of one event with 32
   clients, then ``POST /ingest`` of 100 events with 16 clients; each for ``seconds``;
2. the consumers stopped: ``POST /ingest`` of 100 events with 16 clients (the gateway's
   own capacity);
3. the consumers started again until every event is applied; then the events the gateway
   accepted (202s times events per request) are counted in the topic (published once) and
   in the scorer's ``events`` table (applied once).

    source scripts/env.sh && .venv/bin/python -m bench.ingest_load [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import uvloop
from aiokafka import TopicPartition

from bench.deadlines import wait_until
from bench.imports import end_offsets, gateway
from bench.load import LoadResult, run_load
from bench.processes import ROOT, SCORERS, cpu_seconds, load_average, running, service_env
from bench.seed import add_tenant
from bench.world import World, open_world
from leadvibe.settings import Settings

SECONDS = 30.0
"""Each load's length (the issue: 30 s)."""
READ_CLIENTS = 32
ONE_EVENT_CLIENTS = 32
BATCH_CLIENTS = 16
BATCH = 100
"""Events per request of the batch loads."""
APPLY_TIMEOUT = 600.0
"""Seconds the consumers have to apply every accepted event after the loads."""


def one_event() -> bytes:
    return b'{"lead_id": "ld_load_1", "event_type": "page_view"}'


def batch_of(size: int) -> bytes:
    """``size`` events of as many leads, each with an e-mail alias and a timestamp."""
    events = [
        {
            "lead_id": f"ld_load_{n}",
            "aliases": [{"kind": "email", "value": f"lead{n}@example.com"}],
            "event_type": ("page_view", "email_open", "form_submit")[n % 3],
            "timestamp": "2026-01-15T10:30:00Z",
            "metadata": {"page": f"/pricing/{n}"},
        }
        for n in range(size)
    ]
    return json.dumps({"events": events}).encode()


@dataclass
class IngestLoadRun:
    reads: LoadResult
    one_event: LoadResult
    batches_with_consumers: LoadResult
    batches_alone: LoadResult
    accepted: int = 0
    """Events answered 202, over every load."""
    published: int = 0
    """Records in the events topic after the run."""
    applied: int = 0
    """Rows of the run's unit in the scorer's events table once the consumers caught up."""
    load: dict[str, float] = field(default_factory=dict)
    gateway_cpu_per_request: dict[str, float] = field(default_factory=dict)
    """Load → CPU seconds the gateway's processes used per 2xx answer: the figure the
    machine's other load changes least."""

    @property
    def ingest_to_read(self) -> float:
        return self.one_event.rate / self.reads.rate if self.reads.rate else 0.0

    def as_json(self) -> dict[str, object]:
        def load(r: LoadResult) -> dict[str, object]:
            return {
                "clients": r.clients,
                "seconds": r.seconds,
                "requests_per_second": r.rate,
                "p50_ms": r.percentile(50) * 1000,
                "p99_ms": r.percentile(99) * 1000,
                "errors": dict(r.failures),
                "sample_failure": r.sample_failure[:500],
            }

        return {
            "reads": load(self.reads),
            "one_event": load(self.one_event),
            "batches_with_consumers": load(self.batches_with_consumers),
            "batches_alone": load(self.batches_alone),
            "accepted": self.accepted,
            "published": self.published,
            "applied": self.applied,
            "load_average": self.load,
            "gateway_cpu_per_request": self.gateway_cpu_per_request,
        }


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def gateway_tree(pid: int) -> list[int]:
    """The gateway's process and its children (its copies, when it runs several)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == pid:
                children.append(int(entry.name))
    return [pid, *children]


@asynccontextmanager
async def consumers(env: dict[str, str], logs: Path, tag: str) -> AsyncIterator[None]:
    """One scorer per core and the trigger service, as ``make run`` runs them."""
    async with AsyncExitStack() as stack:
        for n, module in enumerate([*(["scorer"] * SCORERS), "trigger_service"], start=1):
            await stack.enter_async_context(running(module, env, logs / f"{module}-{n}-{tag}.log"))
        yield


async def measure(
    world: World, logs: Path, seconds: float = SECONDS, processes: int = SCORERS
) -> IngestLoadRun:
    """The row, with ``processes`` gateway processes (``make run``: one per core)."""
    topics = await world.topics("ingest")
    url = await world.database("ingest")
    conn = await asyncpg.connect(url)
    try:
        unit_id, token = await add_tenant(conn)
        env = service_env(
            world.settings(topics, url),
            LEADVIBE_WEBHOOK_SECRET="bench",
            LEADVIBE_ALLOW_PRIVATE_WEBHOOKS="true",
        )
        auth = [("Authorization", f"Bearer {token}")]
        post = [*auth, ("Content-Type", "application/json")]
        gateway_env = {**env, "LEADVIBE_GATEWAY_PROCESSES": str(processes)}
        async with gateway(gateway_env, token, logs / "gateway-ingest.log") as gw:
            base = str(gw.client.base_url).rstrip("/")

            cpu: dict[str, float] = {}

            async def load(name: str, path: str, clients: int, body: bytes = b"") -> LoadResult:
                tree = gateway_tree(gw.process.pid)
                before = sum(cpu_seconds(tree).values())
                result = await run_load(
                    base + path,
                    clients=clients,
                    seconds=seconds,
                    method="POST" if body else "GET",
                    headers=post if body else auth,
                    body=body,
                )
                used = sum(cpu_seconds(tree).values()) - before
                cpu[name] = used / max(1, result.ok)
                say(
                    f"   {name}: {result.summary()}, gateway CPU {cpu[name] * 1e6:,.0f} µs a "
                    f"request (load average {load_average():.1f})"
                )
                if result.sample_failure:
                    say("   first failure: " + result.sample_failure[:300].replace("\r\n", " | "))
                return result

            # A warm-up: connections, the token, the topic's metadata.
            warm = await run_load(
                base + "/ingest",
                clients=4,
                seconds=1,
                method="POST",
                headers=post,
                body=one_event(),
            )
            await run_load(base + "/leads?limit=1", clients=4, seconds=1, headers=auth)
            async with consumers(env, logs, "ingest"):
                reads = await load("GET /leads?limit=1", "/leads?limit=1", READ_CLIENTS)
                single = await load(
                    "POST /ingest, 1 event", "/ingest", ONE_EVENT_CLIENTS, one_event()
                )
                with_consumers = await load(
                    f"POST /ingest, {BATCH} events, consumers running",
                    "/ingest",
                    BATCH_CLIENTS,
                    batch_of(BATCH),
                )
            alone = await load(
                f"POST /ingest, {BATCH} events, consumers stopped",
                "/ingest",
                BATCH_CLIENTS,
                batch_of(BATCH),
            )
        run = IngestLoadRun(reads, single, with_consumers, alone, gateway_cpu_per_request=cpu)
        partitions = [TopicPartition(topics.events, p) for p in range(world.partitions)]
        async with end_offsets(world.base, partitions) as ends:
            run.published = sum((await ends()).values())
        run.accepted = warm.ok + single.ok + BATCH * (with_consumers.ok + alone.ok)
        say(
            f"   accepted {run.accepted:,} events; the topic holds "
            f"{run.published:,}; applying them all"
        )
        started = time.perf_counter()
        async with consumers(env, logs, "ingest-catch-up"):

            async def applied() -> int:
                count: int = await conn.fetchval(
                    "SELECT count(*) FROM events WHERE unit_id = $1", unit_id
                )
                return count

            run.applied = await wait_until(
                applied,
                until=lambda n: n >= run.accepted,
                timeout=APPLY_TIMEOUT,
                interval=0.5,
                what="every published event applied",
            )
        say(f"   applied {run.applied:,} in {time.perf_counter() - started:.0f} s after the loads")
    finally:
        await conn.close()
    await world.drop(url)
    return run


async def _main(seconds: float, processes: int, logs: Path) -> IngestLoadRun:
    async with open_world(Settings.from_env()) as world:
        return await measure(world, logs / world.run_id, seconds, processes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest_load", description=__doc__.splitlines()[0]
    )
    p.add_argument("--seconds", type=float, default=SECONDS)
    p.add_argument("--processes", type=int, default=SCORERS, help="gateway processes")
    args = p.parse_args(argv)
    run = uvloop.run(_main(args.seconds, args.processes, ROOT / "bench-results" / "logs"))
    print(json.dumps(run.as_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
