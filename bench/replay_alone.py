"""Replay throughput: events per second rebuilt from the topics into the projections.

    source scripts/env.sh && .venv/bin/python -m bench.replay_alone \
        [--events 200000] [--people 20000] [--partitions 6]

Publishes N events into a fresh topic namespace and lets the scorer (in process) apply
them into a fresh database, timing it; then times, each with the scorer still running:

1. a replay of the intact projections (everything read and rebuilt, nothing to write);
2. a replay after the unit's projections were dropped (every row inserted again);
3. a rescore after a rule's points changed (scores rewritten, replay records published).

The events are those of ``bench.scorer_alone``, a fifth of them with metadata (which a
replay takes from the events topic). Prints each run's summary and its rate; drops the
database and the topics at the end. Needs only the project's packages and the local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bench.scorer_alone import publish_events
from bench.seed import RulesetSpec, add_rulesets
from leadvibe.db import migrate
from leadvibe.settings import Settings
from leadvibe.tenancy import ensure_unit
from leadvibe.topics import ensure_topics
from schemas import Topics
from scorer.progress import Report
from scorer.replay import ReplaySummary, replay, rescore
from scorer.service import run as run_scorer

RULESETS = [
    RulesetSpec(
        "rs_main",
        None,
        None,
        {"page_view": 1, "email_open": 2, "email_click": 5, "form_submit": 20},
    ),
    RulesetSpec(
        "rs_summer",
        datetime(2025, 6, 1, tzinfo=UTC),
        datetime(2025, 9, 1, tzinfo=UTC),
        {"webinar_attend": 40, "page_view": 1},
    ),
]
METADATA_SHARE = 0.2


async def _applied(conn: asyncpg.Connection, count: int, timeout: float = 1800) -> float:
    """Seconds until the events table holds ``count`` rows."""
    started = time.perf_counter()
    while await conn.fetchval("SELECT count(*) FROM events") < count:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"the scorer did not apply {count} events in {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


def _show(title: str, summary: ReplaySummary) -> None:
    print(f"== {title}: {summary.rate:,.0f} events/s", file=sys.stderr)
    for line in summary.lines():
        print(f"   {line}", file=sys.stderr)


async def main() -> None:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()

    base = Settings.from_env()
    run_id = uuid.uuid4().hex[:8]
    name = f"bench_replay_{run_id}"
    topics = Topics(f"benchreplay.{run_id}")
    server = base.database_url.rsplit("/", 1)[0]
    settings = Settings(
        kafka_bootstrap_servers=base.kafka_bootstrap_servers,
        database_url=f"{server}/{name}",
        topics=topics,
        events_partitions=args.partitions,
    )
    admin = await asyncpg.connect(base.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await ensure_topics(settings.kafka_bootstrap_servers, topics, args.partitions)
    stop = asyncio.Event()
    scorer: asyncio.Task[None] | None = None
    try:
        conn = await asyncpg.connect(settings.database_url)
        await migrate(conn)
        _, unit_id = await ensure_unit(conn, "bench", "replay")
        await add_rulesets(conn, unit_id, RULESETS)
        started = time.perf_counter()
        await publish_events(
            settings.kafka_bootstrap_servers,
            topics,
            args.events,
            args.people,
            unit_id=unit_id,
            metadata_share=METADATA_SHARE,
        )
        print(
            f"published {args.events:,} events in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        scorer = asyncio.create_task(run_scorer(settings, stop=stop))
        took = await _applied(conn, args.events)
        print(
            f"== the scorer (in process) applied them at {args.events / took:,.0f} events/s",
            file=sys.stderr,
        )

        _show("replay, projections intact", await replay(settings, progress=Report("replay")))
        for table in ("events", "leads", "lead_ruleset_scores", "aliases", "alias_conflicts"):
            await conn.execute(f"DELETE FROM {table}")
        await conn.execute("DELETE FROM import_progress")
        await conn.execute("VACUUM ANALYZE")
        _show("replay, projections dropped", await replay(settings, progress=Report("replay")))
        await conn.execute("UPDATE rules SET points = 3 WHERE event_type = 'page_view'")
        _show("rescore, page_view 1 -> 3", await rescore(settings, progress=Report("rescore")))
        await conn.close()
    finally:
        stop.set()
        if scorer is not None:
            await scorer
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        kafka = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await kafka.start()
        try:
            await kafka.delete_topics(
                [topics.events, topics.scored, topics.triggers_fired, topics.deadletter]
            )
        finally:
            await kafka.close()


if __name__ == "__main__":
    asyncio.run(main())
