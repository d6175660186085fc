"""The Postgres connection pool and the schema migrations.

Migrations are plain SQL files, ``migrations/NNNN_name.sql``, applied in order, each in
its own transaction, and recorded in ``schema_migrations``. A file once applied is never
edited: a change is a new file.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

log = logging.getLogger(__name__)

# Any constant of our own: serialises concurrent migrators (two services starting at once).
_MIGRATION_LOCK = 0x1EAD_F1BE

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection, whether opened alone or acquired from a pool."""


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to parallel column lists: the shape ``unnest($1::t[], $2::u[], ...)`` takes, so
    that a batch goes into Postgres as one statement rather than one per row."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order they apply."""
    folder = resources.files("leadvibe") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in files]


async def migrate(conn: Connection) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied now."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            log.info("applied migration %s", name)
            applied_now.append(name)
    return applied_now


@asynccontextmanager
async def open_pool(
    database_url: str, *, max_size: int = 10, server_settings: Mapping[str, str] | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool, closed on exit.

    ``server_settings`` are Postgres settings every connection starts with (and returns
    to when the pool resets it).
    """
    pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=max_size,
        server_settings=dict(server_settings) if server_settings else None,
    )
    try:
        yield pool
    finally:
        await pool.close()
