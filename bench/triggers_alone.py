"""Trigger service throughput: scored records per second with 20 active triggers.

    source scripts/env.sh && .venv/bin/python -m bench.triggers_alone [--records 200000]

Publishes N scored records once into a fresh topic namespace (20,000 leads whose scores
climb and sometimes fall, a tenth of the records from imports with ``skip_triggers``),
then, for each run, points a fresh database with 20 active triggers at it and times
``python -m trigger_service`` (a separate process, as in production) consuming them all
as the group ``leadvibe-triggers``. The webhooks go to a minimal receiver in this
process. Prints each run and the median. The rate counts from the first committed batch
to the last, so the consumer group's join time is left out (it is printed separately).
``make bench`` runs the same measurement over 1,000,000 records (row 4).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.consumers import time_consumption
from bench.processes import ROOT, cpu_seconds, cpu_used, running, server_pids, service_env
from bench.seed import UNIT, add_triggers, add_unit, make_triggers
from bench.webhooks import webhook_receiver
from bench.world import World, open_world
from leadvibe.producing import open_producer, publish_batched
from leadvibe.settings import Settings
from schemas import ScoredEvent, Topics, encode
from trigger_service.decisions import Trigger, decide

POINTS = {"page_view": 1, "email_open": 2, "email_click": 5, "form_submit": 20,
          "webinar_attend": 40, "unsubscribe": -30}  # fmt: skip
WEIGHTS = [50, 20, 12, 8, 5, 5]
PUBLISH_CHUNK = 50_000


def iter_records(count: int, leads: int = 20_000, seed: int = 7) -> Iterator[ScoredEvent]:
    """Each lead's score is the running sum of its events' points, as the scorer keeps it."""
    rng = random.Random(seed)
    scores = [0] * leads
    start = datetime(2025, 1, 1, tzinfo=UTC)
    types = list(POINTS)
    for n in range(count):
        lead = rng.randrange(leads)
        event_type = rng.choices(types, WEIGHTS)[0]
        before = scores[lead]
        after = scores[lead] = before + POINTS[event_type]
        yield ScoredEvent(
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


async def publish_records(bootstrap_servers: str, topics: Topics, count: int, leads: int) -> None:
    """The records of :func:`iter_records` on the scored topic, a chunk at a time."""
    records = iter_records(count, leads)
    async with open_producer(bootstrap_servers) as producer:
        while chunk := list(itertools.islice(records, PUBLISH_CHUNK)):
            keyed = [(f"{r.unit_id}:{r.lead_id}".encode(), encode(r)) for r in chunk]
            await publish_batched(producer, topics.scored, keyed)


@dataclass(frozen=True)
class TriggerRun:
    rate: float
    """Records per second from the first committed batch to the last."""
    join: float
    """Seconds from the start of the service to its first committed batch."""
    fired: int
    cpu_us: dict[str, float]
    """CPU microseconds per record of the service, and of the local Postgres and Kafka."""


async def measure(
    world: World,
    topics: Topics,
    count: int,
    *,
    number: int,
    webhook_url: str,
    triggers: Sequence[Trigger],
    logs: Path,
    profile: str | None = None,
) -> TriggerRun:
    """One run: the service consumes the ``count`` records of ``topics`` into a fresh
    database (dropped after the run) where ``triggers`` are active."""
    url = await world.database(f"triggers{number}")
    try:
        conn = await asyncpg.connect(url)
        try:
            await add_unit(conn)
            await add_triggers(conn, triggers, webhook_url)
            env = service_env(
                world.settings(topics, url),
                LEADVIBE_WEBHOOK_SECRET="bench",
                LEADVIBE_ALLOW_PRIVATE_WEBHOOKS="true",
            )
            # cProfile writes its statistics when the service stops (on SIGTERM).
            wrapper = ("-m", "cProfile", "-o", f"{profile}.{number}.prof") if profile else ()
            log = logs / f"triggers-{number}.log"
            database = url.rsplit("/", 1)[1]
            before = {
                name: cpu_seconds(server_pids(name, database)) for name in ("postgres", "kafka")
            }
            started = time.perf_counter()
            async with running("trigger_service", env, log, wrapper=wrapper) as service:
                timing = await time_consumption(
                    conn, count, [service], started=started, what="the trigger service"
                )
                cpu = {"trigger_service": sum(cpu_seconds([service.pid]).values())}
                cpu.update(
                    {name: cpu_used(name, taken, database) for name, taken in before.items()}
                )
            fired: int = await conn.fetchval("SELECT count(*) FROM trigger_firings")
        finally:
            await conn.close()
    finally:
        await world.drop(url)
    return TriggerRun(
        rate=timing.rate,
        join=timing.join,
        fired=fired,
        cpu_us={name: 1e6 * t / count for name, t in cpu.items()},
    )


async def main() -> None:
    assert __doc__ is not None
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
    triggers = make_triggers(args.first_threshold, args.threshold_step)
    expected = len(decide(iter_records(args.records, args.leads), triggers, set()))
    async with open_world(base, partitions=args.partitions) as world:
        topics = await world.topics("triggers")
        started = time.perf_counter()
        await publish_records(base.kafka_bootstrap_servers, topics, args.records, args.leads)
        print(
            f"published {args.records} scored records to {topics.scored} in "
            f"{time.perf_counter() - started:.1f} s; {expected} firings due "
            f"({100 * expected / args.records:.1f}% of the records)",
            file=sys.stderr,
        )
        rates = []
        logs = ROOT / "bench-results" / "logs" / world.run_id
        async with webhook_receiver() as receiver:
            for number in range(1, args.runs + 1):
                run = await measure(
                    world,
                    topics,
                    args.records,
                    number=number,
                    webhook_url=receiver.url,
                    triggers=triggers,
                    logs=logs,
                    profile=args.profile,
                )
                rates.append(run.rate)
                print(
                    "  CPU per record: "
                    + ", ".join(f"{name} {us:.1f} us" for name, us in run.cpu_us.items()),
                    file=sys.stderr,
                )
                print(
                    f"run {number}: {run.rate:,.0f} records/s, {run.fired} firings "
                    f"(first commit after {run.join:.1f} s)"
                )
    print(f"median: {statistics.median(rates):,.0f} records/s over {args.runs} runs")


if __name__ == "__main__":
    asyncio.run(main())
