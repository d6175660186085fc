"""What ``python -m bench.scorer_alone`` and ``python -m bench.triggers_alone`` share: their
common options, where their services' logs go, the time the topic took to publish, and the
runs over it, each shown as it ends and their median last."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from bench.consumers import ConsumerRun
from bench.processes import ROOT

RunT = TypeVar("RunT", bound=ConsumerRun)


def parser(doc: str | None, *, profile: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (the module's docstring), with the
    options every consumer's benchmark takes; ``profile`` is the help of ``--profile``."""
    assert doc is not None
    options = argparse.ArgumentParser(description=doc.splitlines()[0])
    options.add_argument("--runs", type=int, default=3)
    options.add_argument("--partitions", type=int, default=6)
    options.add_argument("--profile", metavar="PREFIX", help=profile)
    return options


def logs_of(run_id: str) -> Path:
    """The folder of one run's service logs, as ``make bench`` has it."""
    return ROOT / "bench-results" / "logs" / run_id


async def timed(work: Awaitable[None]) -> float:
    """Seconds until ``work`` is done (publishing the topic, which no run includes)."""
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


async def each_run(
    runs: int,
    measure: Callable[[int], Awaitable[RunT]],
    show: Callable[[int, RunT], None],
    unit: str,
) -> None:
    """``measure(number)`` for each run from 1, shown by ``show``; then prints the median
    rate, in ``unit`` per second."""
    rates = []
    for number in range(1, runs + 1):
        run = await measure(number)
        show(number, run)
        rates.append(run.rate)
    print(f"median: {statistics.median(rates):,.0f} {unit}/s over {runs} runs")
