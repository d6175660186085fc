"""How long to wait before trying again: capped exponential delays with jitter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass


@dataclass
class Backoff:
    """0.5 s, 1 s, 2 s ... doubling up to 5 s; each delay is drawn between half and all
    of that, so that processes retrying against one dependency spread their attempts.

    The cap is short because it is also how late a repaired dependency is noticed: with
    30 s, partitions resumed 6-36 s after a 2 s Postgres outage (tests/faults). A try
    every few seconds from each process costs a dependency nothing worth saving.
    """

    first: float = 0.5
    cap: float = 5.0
    attempts: int = 0
    """Delays handed out since the last :meth:`reset`."""

    def next_delay(self, draw: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.first * 2.0 ** min(self.attempts, 62))
        self.attempts += 1
        return ceiling * (0.5 + 0.5 * draw())

    def reset(self) -> None:
        self.attempts = 0


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile; whether it is set."""
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
