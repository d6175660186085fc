"""Organisations, units and API tokens.

A token belongs to one organisation and has one active unit; every request it makes acts
in that unit. Only a SHA-256 of the token is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from leadvibe.db import Connection
from schemas.ids import sortable_id

TOKEN_PREFIX = "lv_"
UNIT_ID_PREFIX = "ou_"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's organisation and its active unit."""

    org_id: str
    unit_id: str
    token_hash: bytes


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def ensure_org(conn: Connection, org_name: str) -> str:
    """The id of the named organisation, created if missing."""
    org_id: str = await conn.fetchval(
        """INSERT INTO organizations (org_id, name) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
           RETURNING org_id""",
        sortable_id("org_"),
        org_name,
    )
    return org_id


async def ensure_unit(conn: Connection, org_name: str, unit_name: str) -> tuple[str, str]:
    """The (org_id, unit_id) of the named organisation and unit, created if missing."""
    org_id = await ensure_org(conn, org_name)
    unit_id: str = await conn.fetchval(
        """INSERT INTO org_units (unit_id, org_id, name) VALUES ($1, $2, $3)
           ON CONFLICT (org_id, name) DO UPDATE SET name = EXCLUDED.name
           RETURNING unit_id""",
        sortable_id(UNIT_ID_PREFIX),
        org_id,
        unit_name,
    )
    return org_id, unit_id


@dataclass(frozen=True)
class IssuedToken:
    """A token just made, with the organisation and the unit it is active on."""

    token: str = field(repr=False)
    org_id: str
    unit_id: str


async def issue_token(conn: Connection, org_name: str, unit_name: str) -> IssuedToken:
    """A new token for the organisation, active on the unit (both created if missing)."""
    async with conn.transaction():
        org_id, unit_id = await ensure_unit(conn, org_name, unit_name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await conn.execute(
            "INSERT INTO api_tokens (token_hash, org_id, active_unit_id) VALUES ($1, $2, $3)",
            hash_token(token),
            org_id,
            unit_id,
        )
    return IssuedToken(token, org_id, unit_id)


async def create_token(conn: Connection, org_name: str, unit_name: str) -> str:
    """A new token for the organisation, active on the unit (both created if missing)."""
    return (await issue_token(conn, org_name, unit_name)).token


async def authenticate(conn: Connection | asyncpg.Pool, token: str) -> Principal | None:
    """The principal of a live token, or None for an unknown or revoked one."""
    token_hash = hash_token(token)
    row = await conn.fetchrow(
        """SELECT org_id, active_unit_id FROM api_tokens
           WHERE token_hash = $1 AND revoked_at IS NULL""",
        token_hash,
    )
    if row is None:
        return None
    return Principal(org_id=row["org_id"], unit_id=row["active_unit_id"], token_hash=token_hash)


async def set_active_unit(
    conn: Connection | asyncpg.Pool, principal: Principal, unit_id: str
) -> bool:
    """Switch the token's active unit; False if the unit is not one of its organisation's."""
    status: str = await conn.execute(
        """UPDATE api_tokens SET active_unit_id = $2
           WHERE token_hash = $1
             AND EXISTS (SELECT 1 FROM org_units WHERE unit_id = $2 AND org_id = $3)""",
        principal.token_hash,
        unit_id,
        principal.org_id,
    )
    return status == "UPDATE 1"


class TokenCache:
    """The principals of recently used tokens, each trusted for ``ttl`` seconds.

    A request then costs no query for its token while its principal is fresh; a revoked
    token, or a unit switch made through another process, takes effect in this one within
    ``ttl`` seconds (the process that makes the switch forgets the token at once). Unknown
    and revoked tokens are not remembered: each of their requests asks the database again.
    At most ``size`` tokens are kept; past that the cache starts afresh.
    """

    def __init__(
        self, ttl: float, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._known: dict[bytes, tuple[float, Principal]] = {}
        self._pending: dict[bytes, asyncio.Task[Principal | None]] = {}

    async def authenticate(self, conn: Connection | asyncpg.Pool, token: str) -> Principal | None:
        """What :func:`authenticate` answers, from the cache while it is fresh."""
        token_hash = hash_token(token)
        now = self._clock()
        known = self._known.get(token_hash)
        if known is not None and known[0] > now:
            return known[1]
        # One query per token at a time, in a task of its own: the requests that find the
        # entry stale together (every ``ttl`` under load) share its answer, and one of them
        # giving up (cancelled) does not cancel it for the others.
        lookup = self._pending.get(token_hash)
        if lookup is None:
            lookup = asyncio.get_running_loop().create_task(self._lookup(conn, token, now))
            self._pending[token_hash] = lookup
            lookup.add_done_callback(lambda done: self._settled(token_hash, done))
        return await asyncio.shield(lookup)

    async def _lookup(
        self, conn: Connection | asyncpg.Pool, token: str, now: float
    ) -> Principal | None:
        principal = await authenticate(conn, token)
        token_hash = hash_token(token)
        if self._pending.get(token_hash) is not asyncio.current_task():
            return principal  # forgotten meanwhile: this answer may predate a unit switch
        if principal is None:
            self._known.pop(token_hash, None)
        elif self.ttl > 0:
            if len(self._known) >= self.size:
                self._known.clear()
            self._known[token_hash] = (now + self.ttl, principal)
        return principal

    def _settled(self, token_hash: bytes, lookup: asyncio.Task[Principal | None]) -> None:
        if self._pending.get(token_hash) is lookup:
            del self._pending[token_hash]
        if not lookup.cancelled():
            lookup.exception()  # seen, even if every request waiting for it gave up

    def forget(self, token_hash: bytes) -> None:
        """Ask the database about this token at its next use (its unit was switched)."""
        self._known.pop(token_hash, None)
        self._pending.pop(token_hash, None)


# --- units, as people name them -------------------------------------------------------


class UnitError(LookupError):
    """A unit named on the command line that is not there, or not one only; the message
    says what to type instead."""


@dataclass(frozen=True)
class Unit:
    """An Organizational Unit, with its organisation's name."""

    unit_id: str
    name: str
    org_id: str
    org_name: str
    created_at: datetime


_UNITS = """SELECT u.unit_id, u.name, u.org_id, o.name AS org_name, u.created_at
            FROM org_units AS u JOIN organizations AS o USING (org_id)"""


def _unit(row: asyncpg.Record) -> Unit:
    return Unit(row["unit_id"], row["name"], row["org_id"], row["org_name"], row["created_at"])


async def units(
    conn: Connection | asyncpg.Pool, *, org_id: str | None = None, org_name: str | None = None
) -> list[Unit]:
    """The units of one organisation (by id or name), or of all; oldest first."""
    rows = await conn.fetch(
        _UNITS
        + """ WHERE ($1::text IS NULL OR u.org_id = $1) AND ($2::text IS NULL OR o.name = $2)
              ORDER BY o.name, u.created_at, u.unit_id""",
        org_id,
        org_name,
    )
    return [_unit(r) for r in rows]


async def create_unit(conn: Connection | asyncpg.Pool, org_id: str, name: str) -> Unit | None:
    """A new unit of the organisation; None if it has a unit of that name already."""
    row = await conn.fetchrow(
        """WITH made AS (
               INSERT INTO org_units (unit_id, org_id, name) VALUES ($1, $2, $3)
               ON CONFLICT (org_id, name) DO NOTHING
               RETURNING unit_id, name, org_id, created_at)
           SELECT m.unit_id, m.name, m.org_id, o.name AS org_name, m.created_at
           FROM made AS m JOIN organizations AS o USING (org_id)""",
        sortable_id(UNIT_ID_PREFIX),
        org_id,
        name,
    )
    return None if row is None else _unit(row)


async def resolve_unit(conn: Connection, unit: str, *, org: str | None = None) -> Unit:
    """The unit a person named: its id, or its name (within ``org``, an organisation name,
    when given). Raises UnitError when none matches, or a name is used in several
    organisations."""
    rows = await conn.fetch(
        _UNITS
        + """ WHERE (u.unit_id = $1 OR u.name = $1) AND ($2::text IS NULL OR o.name = $2)
              ORDER BY u.unit_id = $1 DESC, o.name""",
        unit,
        org,
    )
    found = [_unit(r) for r in rows]
    by_id = [u for u in found if u.unit_id == unit]
    if by_id:
        return by_id[0]
    where = f" in organisation {org!r}" if org else ""
    if not found:
        raise UnitError(f"no unit {unit!r}{where}; 'leadvibe unit list' shows every unit")
    if len(found) > 1:
        choices = ", ".join(f"{u.unit_id} ({u.org_name})" for u in found)
        raise UnitError(
            f"{len(found)} organisations have a unit named {unit!r}: {choices}; "
            "give its id, or the organisation with --org"
        )
    return found[0]
