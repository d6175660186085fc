"""Trigger service throughput: scored records per second with 20 active triggers.

    source scripts/env.sh && .venv/bin/python -m bench.triggers_alone [--records 200000]

Publishes N scored records once into a fresh topic namespace (20,000 leads whose scores
climb and sometimes fall, a tenth of the records from imports with ``skip_triggers``),
then, for each run, points a fresh database with 20 active triggers at it and times
``python -m trigger_service`` (a separate process, as in production) consuming them all
as the group ``leadvibe-triggers``. The webhooks go to a minimal receiver in this
process. Prints each run and the median. The rate counts from the first committed batch
to the last, so the consumer group's join time is left out (it is printed separately).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from leadvibe.db import migrate
from leadvibe.producing import open_producer, publish_batched
from leadvibe.settings import Settings
from leadvibe.topics import ensure_topics
from schemas import ScoredEvent, Topics, encode
from trigger_service.decisions import Trigger, decide

ROOT = Path(__file__).resolve().parent.parent
UNIT = "ou_bench"
POINTS = {"page_view": 1, "email_open": 2, "email_click": 5, "form_submit": 20,
          "webinar_attend": 40, "unsubscribe": -30}  # fmt: skip
WEIGHTS = [50, 20, 12, 8, 5, 5]


def make_records(count: int, leads: int = 20_000, seed: int = 7) -> list[ScoredEvent]:
    """Each lead's score is the running sum of its events' points, as the scorer keeps it."""
    rng = random.Random(seed)
    scores = [0] * leads
    start = datetime(2025, 1, 1, tzinfo=UTC)
    types = list(POINTS)
    records = []
    for n in range(count):
        lead = rng.randrange(leads)
        event_type = rng.choices(types, WEIGHTS)[0]
        before = scores[lead]
        after = scores[lead] = before + POINTS[event_type]
        records.append(
            ScoredEvent(
                event_id=f"ev{n:09d}",
                unit_id=UNIT,
                lead_id=f"ld_{lead:06d}",
                event_type=event_type,
                timestamp=start + timedelta(seconds=n),
                points=after - before,
                score_before=before,
                score_after=after,
                skip_triggers=rng.random() < 0.1,
                source="api",
            )
        )
    return records


def make_triggers(first: int, step: int) -> list[Trigger]:
    """20 thresholds, ``first``, ``first + step``...; every third fire-once, every fifth for
    one event type."""
    return [
        Trigger(
            f"trg_{n:02d}",
            UNIT,
            first + step * n,
            "form_submit" if n % 5 == 4 else None,
            once=n % 3 == 0,
        )
        for n in range(20)
    ]


async def publish(settings: Settings, records: list[ScoredEvent]) -> None:
    await ensure_topics(
        settings.kafka_bootstrap_servers, settings.topics, settings.events_partitions
    )
    keyed = [(f"{r.unit_id}:{r.lead_id}".encode(), encode(r)) for r in records]
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        for start in range(0, len(keyed), 50_000):
            await publish_batched(producer, settings.topics.scored, keyed[start : start + 50_000])


async def serve_webhooks() -> tuple[asyncio.Server, str]:
    """The least HTTP/1.1 receiver that keeps connections alive: 204 to every POST."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/hook"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


async def fresh_database(
    settings: Settings, name: str, webhook_url: str, triggers: list[Trigger]
) -> str:
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ('org_b', 'bench')")
        await conn.execute(
            "INSERT INTO org_units (unit_id, org_id, name) VALUES ($1, 'org_b', 'bench')", UNIT
        )
        await conn.executemany(
            """INSERT INTO triggers (trigger_id, unit_id, name, score_threshold, event_type,
                   fire_mode, webhook_url)
               VALUES ($1, $2, $1, $3, $4, $5, $6)""",
            [
                (t.trigger_id, UNIT, t.score_threshold, t.event_type, _mode(t), webhook_url)
                for t in triggers
            ],
        )
    finally:
        await conn.close()
    return url


def _mode(trigger: Trigger) -> str:
    return "once" if trigger.once else "always"


async def one_run(
    settings: Settings,
    count: int,
    number: int,
    webhook_url: str,
    triggers: list[Trigger],
    profile: str | None,
) -> tuple[float, float, int]:
    """(records/s from the first commit to the last, seconds to the first commit, firings)."""
    name = f"bench_triggers_{number}"
    url = await fresh_database(settings, name, webhook_url, triggers)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
        "LEADVIBE_WEBHOOK_SECRET": "bench",
        "LEADVIBE_ALLOW_PRIVATE_WEBHOOKS": "true",
        "LEADVIBE_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "trigger_service"]
    if profile:  # cProfile writes its statistics when the service stops (on SIGTERM)
        command[1:1] = ["-m", "cProfile", "-o", f"{profile}.{number}.prof"]
    conn = await asyncpg.connect(url)
    before = {comm: cpu_seconds(pids_named(comm)) for comm in ("postgres", "java")}
    started = time.perf_counter()
    service = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT)
    try:
        first: tuple[float, int] | None = None
        while True:
            done = await conn.fetchval(
                "SELECT coalesce(sum(next_offset), 0)::bigint FROM consumer_offsets"
            )
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= count:
                break
            if service.returncode is not None:
                raise SystemExit("the trigger service exited early")
            await asyncio.sleep(0.02)
        assert first is not None
        cpu = {
            "trigger_service": cpu_seconds([service.pid]),
            "postgres": cpu_seconds(pids_named("postgres")) - before["postgres"],
            "kafka": cpu_seconds(pids_named("java")) - before["java"],
        }
        fired = await conn.fetchval("SELECT count(*) FROM trigger_firings")
        print(
            "  CPU per record: "
            + ", ".join(f"{name} {1e6 * t / count:.1f} us" for name, t in cpu.items()),
            file=sys.stderr,
        )
    finally:
        service.terminate()
        await asyncio.wait_for(service.wait(), timeout=60)
        await conn.close()
        admin = await asyncpg.connect(settings.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    first_at, first_done = first
    rate = (count - first_done) / (now - first_at) if now > first_at else float("inf")
    return rate, first_at - started, fired


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--first-threshold", type=int, default=50)
    parser.add_argument("--threshold-step", type=int, default=50)
    parser.add_argument("--profile", metavar="PREFIX", help="cProfile each run into PREFIX.N.prof")
    args = parser.parse_args()

    base = Settings.from_env()
    topics = Topics(f"bench.{uuid.uuid4().hex[:8]}")
    settings = Settings(
        kafka_bootstrap_servers=base.kafka_bootstrap_servers,
        database_url=base.database_url,
        topics=topics,
        events_partitions=args.partitions,
    )
    records = make_records(args.records, args.leads)
    triggers = make_triggers(args.first_threshold, args.threshold_step)
    expected = len(decide(records, triggers, set()))
    started = time.perf_counter()
    await publish(settings, records)
    print(
        f"published {args.records} scored records to {topics.scored} in "
        f"{time.perf_counter() - started:.1f} s; {expected} firings due "
        f"({100 * expected / args.records:.1f}% of the records)",
        file=sys.stderr,
    )
    server, webhook_url = await serve_webhooks()
    rates = []
    async with server:
        for number in range(1, args.runs + 1):
            rate, join, fired = await one_run(
                settings, args.records, number, webhook_url, triggers, args.profile
            )
            rates.append(rate)
            print(
                f"run {number}: {rate:,.0f} records/s, {fired} firings "
                f"(first commit after {join:.1f} s)"
            )
    print(f"median: {statistics.median(rates):,.0f} records/s over {args.runs} runs")


if __name__ == "__main__":
    asyncio.run(main())
