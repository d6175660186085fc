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

import asyncio
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.alone import each_run, logs_of, parser, timed
from bench.consumers import ConsumerRun, per_record_us, time_consumption
from bench.processes import cpu_seconds, running, servers_cpu, servers_cpu_used, service_env
from bench.publishing import publish_chunked
from bench.seed import UNIT, add_triggers, make_triggers, unit_database
from bench.webhooks import webhook_receiver
from bench.world import World, open_world
from leadvibe.settings import Settings
from schemas import ScoredEvent, Topics, encode
from trigger_service.decisions import Trigger, decide

POINTS = {"page_view": 1, "email_open": 2, "email_click": 5, "form_submit": 20,
          "webinar_attend": 40, "unsubscribe": -30}  # fmt: skip
WEIGHTS = [50, 20, 12, 8, 5, 5]


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
    """The records of :func:`iter_records` on the scored topic, keyed as the scorer keys them."""
    records = iter_records(count, leads)
    await publish_chunked(
        bootstrap_servers,
        topics.scored,
        ((f"{r.unit_id}:{r.lead_id}".encode(), encode(r)) for r in records),
    )


@dataclass(frozen=True)
class TriggerRun(ConsumerRun):
    fired: int
    """Firings the run stored."""


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
    async with unit_database(world, f"triggers{number}") as (url, conn):
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
        before = servers_cpu(database)
        started = time.perf_counter()
        async with running("trigger_service", env, log, wrapper=wrapper) as service:
            timing = await time_consumption(
                conn, count, [service], started=started, what="the trigger service"
            )
            cpu = {"trigger_service": sum(cpu_seconds([service.pid]).values())}
            cpu.update(servers_cpu_used(before, database))
        fired: int = await conn.fetchval("SELECT count(*) FROM trigger_firings")
    return TriggerRun(
        rate=timing.rate,
        join=timing.join,
        fired=fired,
        cpu_us=per_record_us(cpu, count),
    )


def _show(number: int, run: TriggerRun) -> None:
    print(
        "  CPU per record: " + ", ".join(f"{name} {us:.1f} us" for name, us in run.cpu_us.items()),
        file=sys.stderr,
    )
    print(
        f"run {number}: {run.rate:,.0f} records/s, {run.fired} firings "
        f"(first commit after {run.join:.1f} s)"
    )


async def main() -> None:
    options = parser(__doc__, profile="cProfile each run into PREFIX.N.prof")
    options.add_argument("--records", type=int, default=200_000)
    options.add_argument("--leads", type=int, default=20_000)
    options.add_argument("--first-threshold", type=int, default=50)
    options.add_argument("--threshold-step", type=int, default=50)
    args = options.parse_args()

    base = Settings.from_env()
    triggers = make_triggers(args.first_threshold, args.threshold_step)
    expected = len(decide(iter_records(args.records, args.leads), triggers, set()))
    async with open_world(base, partitions=args.partitions) as world:
        topics = await world.topics("triggers")
        took = await timed(
            publish_records(base.kafka_bootstrap_servers, topics, args.records, args.leads)
        )
        print(
            f"published {args.records} scored records to {topics.scored} in {took:.1f} s; "
            f"{expected} firings due ({100 * expected / args.records:.1f}% of the records)",
            file=sys.stderr,
        )
        logs = logs_of(world.run_id)
        async with webhook_receiver() as receiver:
            await each_run(
                args.runs,
                lambda number: measure(
                    world,
                    topics,
                    args.records,
                    number=number,
                    webhook_url=receiver.url,
                    triggers=triggers,
                    logs=logs,
                    profile=args.profile,
                ),
                _show,
                "records",
            )


if __name__ == "__main__":
    asyncio.run(main())
