"""Timing a consumer service through the offsets it stores with its effects.

Both consumers commit each batch's effects and its next offsets in one transaction
(``consumer_offsets``), so the stored offsets say exactly how many records are applied,
from outside the process and without slowing it down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from bench.deadlines import DeadlineExceeded, deadline_for


@dataclass(frozen=True)
class Consumption:
    rate: float
    """Records per second from the first committed batch to the last: the consumer group's
    join time is left out. When one batch held everything, the time from the start of the
    process to that commit, start-up included."""
    join: float
    """Seconds from the start of the process to its first committed batch."""
    elapsed: float
    """Seconds from the start of the process to the last commit."""


@dataclass(frozen=True)
class ConsumerRun:
    """What each run of a consumer's benchmark reports (its figures per record)."""

    rate: float
    """Records per second from the first committed batch to the last."""
    join: float
    """Seconds from the start of the processes to the first committed batch."""
    cpu_us: dict[str, float]
    """CPU microseconds per record of the service, and of the local Postgres and Kafka."""


def per_record_us(cpu: Mapping[str, float], count: int) -> dict[str, float]:
    """CPU seconds (by process name) as microseconds per record of ``count``."""
    return {name: 1e6 * seconds / count for name, seconds in cpu.items()}


async def time_consumption(
    conn: asyncpg.Connection,
    count: int,
    processes: Sequence[asyncio.subprocess.Process],
    *,
    started: float,
    what: str,
) -> Consumption:
    """Poll the stored offsets (of the one group in the database) until they reach ``count``.

    ``started`` is the ``time.perf_counter()`` at which the processes were started. Raises
    RuntimeError if a process exits first, DeadlineExceeded if ``count`` is not reached
    within :func:`deadline_for`.
    """
    deadline = time.perf_counter() + deadline_for(count)
    first: tuple[float, int] | None = None
    while True:
        done: int = await conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM consumer_offsets"
        )
        now = time.perf_counter()
        if done and first is None:
            first = (now, done)
        if done >= count:
            break
        if any(p.returncode is not None for p in processes):
            raise RuntimeError(f"{what} exited before consuming {count} records ({done} done)")
        if now > deadline:
            raise DeadlineExceeded(f"{what}: {done} of {count} records when time ran out")
        await asyncio.sleep(0.02)
    assert first is not None
    first_at, first_done = first
    if first_done < count and now > first_at:
        rate = (count - first_done) / (now - first_at)
    else:
        rate = count / (now - started)
    return Consumption(rate=rate, join=first_at - started, elapsed=now - started)
