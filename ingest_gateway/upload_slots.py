"""How many imports the gateway works on at once: a few per unit and a bound in all.

An import holds a slot from before its file is read until it is answered, so that one
tenant's uploads cannot take every worker and the spool of many at once. A request that
finds no slot is refused at once (429 with Retry-After), never queued: a queued upload
would hold its connection, and its client, for an unknown time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from ingest_gateway.errors import TooManyRequests

RETRY_AFTER: Final = 5
"""Seconds a client is asked to wait after a 429: about the time of a 10 MB import."""


class UploadSlots:
    """``per_unit`` slots for each unit, ``in_all`` slots in all."""

    def __init__(self, *, per_unit: int, in_all: int) -> None:
        self.per_unit = per_unit
        self.in_all = in_all
        self._taken = 0
        self._by_unit: dict[str, int] = {}

    def in_use(self, unit_id: str | None = None) -> int:
        return self._taken if unit_id is None else self._by_unit.get(unit_id, 0)

    @contextmanager
    def take(self, unit_id: str) -> Iterator[None]:
        """Hold a slot of the unit while the block runs; 429 if there is none free."""
        if self._by_unit.get(unit_id, 0) >= self.per_unit:
            raise TooManyRequests(
                f"Your unit has {self.per_unit} imports in progress, the most it may have at "
                f"once; send this one when one of them is answered (in about {RETRY_AFTER} "
                "seconds).",
                code="too_many_uploads",
                retry_after=RETRY_AFTER,
            )
        if self._taken >= self.in_all:
            raise TooManyRequests(
                f"The service is working on {self.in_all} imports, the most it takes at once; "
                f"send this one again in about {RETRY_AFTER} seconds.",
                code="too_many_uploads",
                retry_after=RETRY_AFTER,
            )
        self._taken += 1
        self._by_unit[unit_id] = self._by_unit.get(unit_id, 0) + 1
        try:
            yield
        finally:
            self._taken -= 1
            left = self._by_unit[unit_id] - 1
            if left:
                self._by_unit[unit_id] = left
            else:
                del self._by_unit[unit_id]
