"""Row 5: a full rebuild of the projections from the topics, with issue 6's replay.

The scorer first applies the events once (set-up, not timed) into a database of their own,
so that the topics hold exactly one scored record per event, as in production; each run
then times ``scorer.replay.replay`` rebuilding every projection of that database.

The replay is looked up when the benchmark runs, not imported: the row reads "not
available yet" on a tree where it has not landed, and the rest of the benchmark runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.consumers import time_consumption
from bench.processes import running, service_env
from bench.scorer_alone import publish_events
from bench.seed import RULESETS, UNIT, add_rulesets, add_unit
from bench.world import World
from leadvibe.settings import Settings

MODULE = "scorer.replay"

Replay = Callable[[Settings], Awaitable[Any]]


def find_replay() -> Replay | str:
    """The replay function, or why there is none."""
    if importlib.util.find_spec(MODULE) is None:
        return "not available yet: issue 6 (replay) has not landed, no scorer/replay.py"
    replay = getattr(importlib.import_module(MODULE), "replay", None)
    if not callable(replay):
        return f"not available yet: {MODULE} has no replay()"
    function: Replay = replay
    return function


@dataclass(frozen=True)
class ReplayRun:
    events: int
    """Events in the rebuilt projections."""
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


async def measure_replay(
    world: World, replay: Replay, count: int, people: int, runs: int, logs: Path
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
        results = []
        for _ in range(runs):
            started = time.perf_counter()
            await replay(settings)
            seconds = time.perf_counter() - started
            events: int = await conn.fetchval("SELECT count(*) FROM events")
            results.append(ReplayRun(events, seconds))
    finally:
        await conn.close()
    await world.drop(url)
    return results
