"""Waiting for a condition with a deadline, never for a fixed time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from bench.deadlines import DeadlineExceeded, wait_until

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = bool,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until ``until(result)`` holds; return that result.

    Fails the test (AssertionError, with the last result seen) when ``timeout`` seconds
    pass first. The loop is the benchmark's (:func:`bench.deadlines.wait_until`).
    """
    try:
        return await wait_until(probe, until=until, timeout=timeout, interval=interval, what=what)
    except DeadlineExceeded as exc:
        raise AssertionError(str(exc)) from None
