"""How many imports the gateway works on at once: a few per unit and a bound in all.

An import holds a slot from before its file is read until it is answered, so that one
tenant's uploads cannot take every worker and the spool of many at once. A request that
finds no slot is refused at once (429 with Retry-After), never queued: a queued upload
would hold its connection, and its client, for an unknown time.

The bounds hold across every gateway process on the database (several on one port,
``ingest_gateway.processes``, or on several hosts): :class:`SharedSlots` holds each slot as
a Postgres advisory lock, on a connection of the import's own that is closed when the
import is answered, so a process that dies gives its slots back with its connections.
:class:`UploadSlots` counts a process's own first, which refuses most uploads beyond the
bounds without a query.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Final

from ingest_gateway.database import open_connection
from ingest_gateway.errors import TooManyRequests
from leadvibe.db import Connection

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
            raise _unit_full(self.per_unit)
        if self._taken >= self.in_all:
            raise _all_full(self.in_all)
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


def _unit_full(per_unit: int) -> TooManyRequests:
    return TooManyRequests(
        f"Your unit has {per_unit} imports in progress, the most it may have at "
        f"once; send this one when one of them is answered (in about {RETRY_AFTER} "
        "seconds).",
        code="too_many_uploads",
        retry_after=RETRY_AFTER,
    )


def _all_full(in_all: int) -> TooManyRequests:
    return TooManyRequests(
        f"The service is working on {in_all} imports, the most it takes at once; "
        f"send this one again in about {RETRY_AFTER} seconds.",
        code="too_many_uploads",
        retry_after=RETRY_AFTER,
    )


def lock_key(*parts: str) -> int:
    """The 64-bit advisory lock key of a slot (collisions: one in 2**64)."""
    digest = hashlib.blake2b("\x1f".join(("leadvibe.upload", *parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def _first_free(conn: Connection, keys: list[int]) -> int | None:
    for key in keys:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            return key
    return None


class SharedSlots:
    """:class:`UploadSlots` held across processes too, as advisory locks (see above)."""

    def __init__(self, database_url: str, *, per_unit: int, in_all: int) -> None:
        self.database_url = database_url
        self.local = UploadSlots(per_unit=per_unit, in_all=in_all)

    @asynccontextmanager
    async def take(self, unit_id: str) -> AsyncIterator[None]:
        """Hold a slot of the unit, in this process and in all, while the block runs; 429
        if there is none free; 503 if the database is unreachable (it is needed anyway)."""
        per_unit, in_all = self.local.per_unit, self.local.in_all
        with self.local.take(unit_id):
            conn = await open_connection(self.database_url)
            try:
                if (
                    await _first_free(conn, [lock_key(unit_id, str(i)) for i in range(per_unit)])
                    is None
                ):
                    raise _unit_full(per_unit)
                if await _first_free(conn, [lock_key("*", str(i)) for i in range(in_all)]) is None:
                    raise _all_full(in_all)
                yield  # the locks go with the connection, whichever way the block ends
            finally:
                conn.terminate()  # closing ends the session, and with it its locks
