"""Scorer throughput: events per second from a full topic into the projections.

    source scripts/env.sh && .venv/bin/python -m bench.scorer_alone \
        [--events 200000] [--people 20000] [--runs 3] [--processes 1] [--batch 20000]

Publishes N events once into a fresh topic namespace (a mix of lead ids, aliases that
create leads and aliases that find them again, three rulesets, one of them dated), then,
for each run, points a fresh database at it and times ``python -m scorer`` (a separate
process, as in production) consuming them all as the group ``leadvibe-scorer``. Prints
each run and the median. The rate counts from the first committed batch to the last,
so the consumer group's join time is left out (it is printed separately).
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
from schemas import Alias, LeadEvent, Topics, encode
from schemas.aliases import partition_key

ROOT = Path(__file__).resolve().parent.parent
UNIT = "ou_bench"
EVENT_TYPES = ["page_view", "email_open", "email_click", "form_submit", "webinar_attend"]
RULESETS = [
    ("rs_web", None, None, {"page_view": 1, "form_submit": 20}),
    ("rs_email", None, None, {"email_open": 2, "email_click": 5, "unsubscribe": -30}),
    ("rs_summer", datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 9, 1, tzinfo=UTC),
     {"webinar_attend": 40, "page_view": 1}),
]  # fmt: skip


def make_events(count: int, people: int, seed: int = 7) -> list[LeadEvent]:
    """Events about ``people`` people: 40% by lead id, 30% by lead id with a cookie, 30% by
    e-mail only (sometimes with a phone), which is another lead per person, made from its
    aliases. The fewer events per lead, the more lead rows each batch writes."""
    rng = random.Random(seed)
    leads = max(people, 1)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = []
    for _ in range(count):
        person = rng.randrange(leads)
        kind = rng.random()
        lead_id: str | None = None
        aliases: tuple[Alias, ...] = ()
        if kind < 0.4:
            lead_id = f"ld_known{person}"
        elif kind < 0.7:
            lead_id = f"ld_known{person}"
            aliases = (Alias("cookie", f"ck{person}"),)
        else:  # the same person by e-mail (sometimes upper-cased), sometimes with a phone
            aliases = (Alias("email", f"Person{person}@Example.com"),)
            if rng.random() < 0.3:
                aliases += (Alias("phone", f"+1 555 {person:07d}"),)
        events.append(
            LeadEvent(
                event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                unit_id=UNIT,
                lead_id=lead_id,
                aliases=aliases,
                event_type=rng.choice(EVENT_TYPES),
                timestamp=start + timedelta(minutes=rng.randrange(365 * 24 * 60)),
                source="import" if rng.random() < 0.5 else "api",
            )
        )
    return events


async def publish(settings: Settings, events: list[LeadEvent]) -> None:
    await ensure_topics(
        settings.kafka_bootstrap_servers, settings.topics, settings.events_partitions
    )
    records = [(partition_key(e.unit_id, e.lead_id, e.aliases), encode(e)) for e in events]
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        for start in range(0, len(records), 50_000):
            await publish_batched(producer, settings.topics.events, records[start : start + 50_000])


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU time of each process so far (Linux /proc); those gone are left out."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def cpu_used(name: str, before: dict[int, float]) -> float:
    """CPU time used since ``before`` by the server ``name`` (new processes included)."""
    now = cpu_seconds(server_pids(name))
    return sum(t - before.get(pid, 0.0) for pid, t in now.items())


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append((int(entry.name), int(stat[1]), cmdline))
    return found


def server_pids(name: str) -> list[int]:
    """The local stack's own processes (scripts/stack.sh), not another Kafka or Postgres
    that may run on the machine: the broker started from .local/kafka, and the postmaster
    of .local/postgres with its children (one backend per connection)."""
    local = ROOT / ".local"
    processes = _processes()
    if name == "kafka":
        return [pid for pid, _, cmd in processes if "kafka.Kafka" in cmd and str(local) in cmd]
    postmaster = int((local / "postgres/data/postmaster.pid").read_text().split()[0])
    return [pid for pid, parent, _ in processes if postmaster in (pid, parent)]


def _database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


async def fresh_database(settings: Settings, name: str) -> str:
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _database_url(settings.database_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ('org_b', 'bench')")
        await conn.execute(
            "INSERT INTO org_units (unit_id, org_id, name) VALUES ($1, 'org_b', 'bench')", UNIT
        )
        for ruleset_id, starts_at, ends_at, rules in RULESETS:
            await conn.execute(
                """INSERT INTO rulesets (ruleset_id, unit_id, name, starts_at, ends_at)
                   VALUES ($1, $2, $1, $3, $4)""",
                ruleset_id,
                UNIT,
                starts_at,
                ends_at,
            )
            await conn.executemany(
                """INSERT INTO rules (ruleset_id, event_type, points, position)
                   VALUES ($1, $2, $3, 0)""",
                [(ruleset_id, t, p) for t, p in rules.items()],
            )
    finally:
        await conn.close()
    return url


async def drop_database(settings: Settings, name: str) -> None:
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def one_run(
    settings: Settings, count: int, batch: int, number: int, processes: int, profile: str | None
) -> tuple[float, float]:
    """(events per second from the first commit to the last, seconds until the first commit)."""
    name = f"bench_scorer_{number}"
    url = await fresh_database(settings, name)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
        "LEADVIBE_SCORER_BATCH": str(batch),
        "LEADVIBE_LOG_LEVEL": "WARNING",
    }
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    scorers = []
    for n in range(processes):
        command = [sys.executable, "-m", "scorer"]
        if profile:  # pyinstrument (dev extra) writes a text profile when the scorer stops
            out = f"{profile}.{number}.{n}.txt"
            command[1:1] = ["-m", "pyinstrument", "-r", "text", "-o", out]
        scorers.append(await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT))
    before = {name: cpu_seconds(server_pids(name)) for name in ("postgres", "kafka")}
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
            if any(p.returncode is not None for p in scorers):
                raise SystemExit("a scorer exited early")
            await asyncio.sleep(0.02)
        assert first is not None
        used = {name: cpu_used(name, taken) for name, taken in before.items()}
        used["scorer"] = sum(cpu_seconds([p.pid for p in scorers]).values())
        applied = await conn.fetchval("SELECT count(*) FROM events")
        leads = await conn.fetchval("SELECT count(*) FROM leads")
        print(
            f"  applied {applied} events to {leads} leads; CPU per event: "
            + ", ".join(f"{name} {1e6 * t / count:.0f} us" for name, t in used.items()),
            file=sys.stderr,
        )
    finally:
        for process in scorers:
            process.terminate()
        for process in scorers:
            await asyncio.wait_for(process.wait(), timeout=30)
        await conn.close()
        await drop_database(settings, name)
    first_at, first_done = first
    rate = (count - first_done) / (now - first_at) if now > first_at else float("inf")
    return rate, first_at - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--people", type=int, default=20_000, help="distinct people (about twice as many leads)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20_000, help="LEADVIBE_SCORER_BATCH")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--processes", type=int, default=1, help="scorer processes in the group")
    parser.add_argument("--profile", metavar="PREFIX", help="profile each run into PREFIX.N.txt")
    args = parser.parse_args()

    base = Settings.from_env()
    topics = Topics(f"bench.{uuid.uuid4().hex[:8]}")
    settings = Settings(
        kafka_bootstrap_servers=base.kafka_bootstrap_servers,
        database_url=base.database_url,
        topics=topics,
        events_partitions=args.partitions,
    )
    started = time.perf_counter()
    await publish(settings, make_events(args.events, args.people))
    print(
        f"published {args.events} events to {topics.events} in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    rates = []
    for number in range(1, args.runs + 1):
        rate, join = await one_run(
            settings, args.events, args.batch, number, args.processes, args.profile
        )
        rates.append(rate)
        print(f"run {number}: {rate:,.0f} events/s (first commit after {join:.1f} s)")
    print(f"median: {statistics.median(rates):,.0f} events/s over {args.runs} runs")


if __name__ == "__main__":
    asyncio.run(main())
