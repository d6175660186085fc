"""Row 5: a full rebuild of the projections from the topics, with issue 6's replay.

The scorer first applies the events once (set-up, not timed) into a database of their own,
so that the topics hold one scored record per event, as in production; it is stopped, and
each run then times ``scorer.replay.replay`` rebuilding every projection of that database
from the topics (reading both topics whole, rebuilding, and switching: with unchanged
rules it writes and publishes nothing).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.consumers import time_consumption
from bench.deadlines import deadline_for
from bench.processes import CpuMeter, running, service_env
from bench.scorer_alone import publish_events
from bench.seed import RULESETS, UNIT, add_rulesets, add_unit
from bench.world import World
from scorer.replay import replay


@dataclass(frozen=True)
class ReplayRun:
    events: int
    """Events in the rebuilt projections."""
    records_read: int
    seconds: float
    cpu_us: dict[str, float]
    """CPU microseconds per event: of the replay (it runs in the benchmark's process), and
    of the local Postgres (for the run's database) and Kafka."""

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


async def measure_replay(
    world: World, count: int, people: int, runs: int, logs: Path
) -> list[ReplayRun]:
    """``runs`` full rebuilds of the projections of ``count`` events the scorer applied."""
    topics = await world.topics("replay")
    await publish_events(world.base.kafka_bootstrap_servers, topics, count, people)
    url = await world.database("replay")
    settings = world.settings(topics, url)
    conn = await asyncpg.connect(url)
    try:
        await add_unit(conn)
        await add_rulesets(conn, UNIT, RULESETS)
        started = time.perf_counter()
        async with running("scorer", service_env(settings), logs / "scorer-replay.log") as p:
            await time_consumption(conn, count, [p], started=started, what="the scorer")
    finally:
        await conn.close()
    results = []
    for _ in range(runs):
        cpu = CpuMeter(url.rsplit("/", 1)[1], this="replay")
        started = time.perf_counter()
        summary = await asyncio.wait_for(replay(settings), timeout=deadline_for(2 * count))
        seconds = time.perf_counter() - started
        events = summary.totals.events
        cpu_us = {name: 1e6 * s / max(events, 1) for name, s in cpu.used().items()}
        results.append(ReplayRun(events, summary.records_read, seconds, cpu_us))
    await world.drop(url)
    return results
