"""Scorer throughput: events per second from a full topic into the projections.

    source scripts/env.sh && .venv/bin/python -m bench.scorer_alone \
        [--events 200000] [--people 20000] [--runs 3] [--processes 1] [--batch 20000] [--zipf 1.0]

Publishes N events once into a fresh topic namespace (a mix of lead ids, aliases that
create leads and aliases that find them again, three rulesets, one of them dated), then,
for each run, points a fresh database at it and times ``python -m scorer`` (a separate
process, as in production) consuming them all as the group ``leadvibe-scorer``. Prints
each run and the median. The rate counts from the first committed batch to the last,
so the consumer group's join time is left out (it is printed separately).
``make bench`` runs the same measurement over 1,000,000 events (row 3), and again with
each event's person drawn Zipf-like (``--zipf 1.0``, row 8: a few leads with very many
events, most with a handful).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.alone import each_run, logs_of, parser, timed
from bench.consumers import ConsumerRun, per_record_us, time_consumption
from bench.processes import cpu_seconds, running, servers_cpu, servers_cpu_used, service_env
from bench.publishing import publish_chunked
from bench.seed import RULESETS, UNIT, add_rulesets, unit_database
from bench.world import World, open_world
from leadvibe.settings import Settings
from schemas import Alias, LeadEvent, Topics, encode
from schemas.ids import sortable_id
from schemas.topics import partition_key

EVENT_TYPES = ["page_view", "email_open", "email_click", "form_submit", "webinar_attend"]


ZIPF_EXPONENT = 1.0
"""The exponent of row 8's Zipf-like people: the person of rank k has weight 1 / k**s."""


def zipf_people(people: int, exponent: float, rng: random.Random) -> Callable[[], int]:
    """Draws of a person in ``range(people)``, person k (0-based) having weight
    ``1 / (k + 1) ** exponent``: with 1.0 over 100,000 people, person 0 has 8% of the
    events, the first 100 people 43%, and most people a handful or none."""
    cumulative = list(itertools.accumulate(1 / (k + 1) ** exponent for k in range(people)))
    total = cumulative[-1]
    search = bisect.bisect_right
    random_ = rng.random
    last = people - 1
    return lambda: min(search(cumulative, random_() * total), last)


def iter_events(
    count: int,
    people: int,
    seed: int = 7,
    *,
    unit_id: str = UNIT,
    metadata_share: float = 0.0,
    zipf: float | None = None,
) -> Iterator[LeadEvent]:
    """Events about ``people`` people of ``unit_id``: 40% by lead id, 30% by lead id with a
    cookie, 30% by e-mail only (sometimes with a phone), which is another lead per person,
    made from its aliases. The fewer events per lead, the more lead rows each batch writes.
    A share ``metadata_share`` of them name a campaign in their metadata. Each event's
    person is drawn uniformly, or with ``zipf`` Zipf-like (:func:`zipf_people`)."""
    rng = random.Random(seed)
    ids = random.Random(seed + 1)  # apart, so that the events are the same whatever the ids
    leads = max(people, 1)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    received = int(start.timestamp() * 1000) + 365 * 24 * 3_600_000
    draw = zipf_people(leads, zipf, rng) if zipf else lambda: rng.randrange(leads)
    for n in range(count):
        person = draw()
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
        yield LeadEvent(
            # As the gateway names them: time-ordered, about 50 events a millisecond.
            event_id=sortable_id("ev_", millis=received + n // 50, entropy=ids.randbytes(10)),
            unit_id=unit_id,
            lead_id=lead_id,
            aliases=aliases,
            event_type=rng.choice(EVENT_TYPES),
            timestamp=start + timedelta(minutes=rng.randrange(365 * 24 * 60)),
            source="import" if rng.random() < 0.5 else "api",
            # Drawn only when asked for: without metadata, the same seed gives the same events.
            metadata=(
                {"campaign": f"c{person % 17}"}
                if metadata_share and rng.random() < metadata_share
                else {}
            ),
        )


async def publish_events(
    bootstrap_servers: str,
    topics: Topics,
    count: int,
    people: int,
    *,
    unit_id: str = UNIT,
    metadata_share: float = 0.0,
    zipf: float | None = None,
) -> None:
    """The events of :func:`iter_events` on the events topic, keyed as the gateway keys them."""
    events = iter_events(count, people, unit_id=unit_id, metadata_share=metadata_share, zipf=zipf)
    await publish_chunked(
        bootstrap_servers,
        topics.events,
        ((partition_key(e.unit_id), encode(e)) for e in events),
    )


@dataclass(frozen=True)
class ScorerRun(ConsumerRun):
    applied: int
    """Rows of the events table after the run."""
    leads: int


async def measure(
    world: World,
    topics: Topics,
    count: int,
    *,
    number: int,
    logs: Path,
    batch: int | None = None,
    processes: int = 1,
    profile: str | None = None,
) -> ScorerRun:
    """One run: ``processes`` scorers consume the ``count`` events of ``topics`` into a
    fresh database (dropped after the run) with :data:`RULESETS`."""
    async with unit_database(world, f"scorer{number}") as (url, conn):
        await add_rulesets(conn, UNIT, RULESETS)
        extra = {"LEADVIBE_SCORER_BATCH": str(batch)} if batch else {}
        env = service_env(world.settings(topics, url), **extra)
        return await _time_scorers(conn, env, count, number, logs, processes, profile)


async def _time_scorers(
    conn: asyncpg.Connection,
    env: dict[str, str],
    count: int,
    number: int,
    logs: Path,
    processes: int,
    profile: str | None,
) -> ScorerRun:
    async with AsyncExitStack() as stack:
        started = time.perf_counter()
        scorers = []
        for n in range(processes):
            # pyinstrument (dev extra) writes a text profile when the scorer stops.
            wrapper = ("-m", "pyinstrument", "-r", "text", "-o", f"{profile}.{number}.{n}.txt")
            log = logs / f"scorer-{number}-{n}.log"
            scorers.append(
                await stack.enter_async_context(
                    running("scorer", env, log, wrapper=wrapper if profile else ())
                )
            )
        database = env["DATABASE_URL"].rsplit("/", 1)[1]
        before = servers_cpu(database)
        timing = await time_consumption(conn, count, scorers, started=started, what="the scorer")
        used = servers_cpu_used(before, database)
        used["scorer"] = sum(cpu_seconds([p.pid for p in scorers]).values())
    applied: int = await conn.fetchval("SELECT count(*) FROM events")
    leads: int = await conn.fetchval("SELECT count(*) FROM leads")
    return ScorerRun(
        rate=timing.rate,
        join=timing.join,
        applied=applied,
        leads=leads,
        cpu_us=per_record_us(used, count),
    )


def _show(number: int, run: ScorerRun) -> None:
    print(
        f"  applied {run.applied} events to {run.leads} leads; CPU per event: "
        + ", ".join(f"{name} {us:.0f} us" for name, us in run.cpu_us.items()),
        file=sys.stderr,
    )
    print(f"run {number}: {run.rate:,.0f} events/s (first commit after {run.join:.1f} s)")


async def main() -> None:
    options = parser(__doc__, profile="profile each run into PREFIX.N.txt")
    options.add_argument("--events", type=int, default=200_000)
    options.add_argument(
        "--people", type=int, default=20_000, help="distinct people (about twice as many leads)"
    )
    options.add_argument("--batch", type=int, default=20_000, help="LEADVIBE_SCORER_BATCH")
    options.add_argument("--processes", type=int, default=1, help="scorer processes in the group")
    options.add_argument(
        "--zipf",
        type=float,
        metavar="S",
        help="draw each event's person Zipf-like with exponent S (make bench's row 8: 1.0)",
    )
    args = options.parse_args()

    base = Settings.from_env()
    async with open_world(base, partitions=args.partitions) as world:
        topics = await world.topics("scorer")
        took = await timed(
            publish_events(
                base.kafka_bootstrap_servers, topics, args.events, args.people, zipf=args.zipf
            )
        )
        print(f"published {args.events} events to {topics.events} in {took:.1f} s", file=sys.stderr)
        logs = logs_of(world.run_id)
        await each_run(
            args.runs,
            lambda number: measure(
                world,
                topics,
                args.events,
                number=number,
                logs=logs,
                batch=args.batch,
                processes=args.processes,
                profile=args.profile,
            ),
            _show,
            "events",
        )


if __name__ == "__main__":
    asyncio.run(main())
