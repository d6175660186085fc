"""Waiting for a condition with a deadline: every wait of the benchmark ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(RuntimeError):
    """A condition did not hold in time; the message says which, and the last value seen."""


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = bool,
    timeout: float,
    interval: float = 0.02,
    what: str,
) -> T:
    """Call ``probe`` until ``until(result)`` holds and return that result.

    Raises DeadlineExceeded once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"{what}: not within {timeout:.0f} s (last: {result!r})")
        await asyncio.sleep(interval)


def deadline_for(count: int, *, slowest_rate: float = 2_000.0, floor: float = 60.0) -> float:
    """Seconds to allow for ``count`` items: far beyond any plausible run, still finite."""
    return floor + count / slowest_rate
