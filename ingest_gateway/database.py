"""The gateway's way to Postgres: it starts while Postgres is down, and rides out restarts.

The pool opens no connection at start (``min_size=0``): each request acquires one, which
connects on demand. A request that finds the database unreachable, restarting or gone
mid-query answers 503 ``database_unavailable`` with Retry-After (:func:`unavailable_response`),
and the pool drops every idle connection it holds, since they are as dead as the one that
failed: the next request connects afresh. So the gateway recovers by itself once Postgres
answers again, and never keeps a half-dead pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from asyncpg import exceptions as pg
from starlette.requests import Request
from starlette.responses import Response

from ingest_gateway.errors import ServiceUnavailable, api_error_response

log = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 5.0
"""Seconds to open a connection before the request answers 503 (asyncpg's default is 60)."""
IDLE_LIFETIME: Final = 60.0
"""Seconds an idle pooled connection is kept; a connection a network fault left half-open
(no reset ever arrives) is dropped by then even if no request trips over it."""
RETRY_AFTER: Final = 5
"""Seconds a client is asked to wait before retrying after a 503."""


class DatabaseUnreachable(Exception):
    """A connection to Postgres could not be opened (refused, timed out, starting up)."""


OUTAGES: Final[tuple[type[BaseException], ...]] = (
    DatabaseUnreachable,
    pg.PostgresConnectionError,  # SQLSTATE 08: the connection failed or was lost mid-query
    pg.AdminShutdownError,  # 57P01: the server is shutting down
    pg.CrashShutdownError,  # 57P02: another backend crashed; the server restarts
    pg.CannotConnectNowError,  # 57P03: the server is starting up or recovering
    pg.TooManyConnectionsError,  # 53300: full for now
    # A pooled connection a lost server left mid-protocol ("cannot switch to state ...;
    # another operation is in progress"): seen on the first query after a kill -9 of the
    # postmaster. The connection is unusable; the pool's are renewed.
    pg.InternalClientError,
)
"""Failures that say the database is away for now, not that the request was wrong."""


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means Postgres is unreachable or restarting (answer 503, retry)."""
    return isinstance(exc, OUTAGES)


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg's connect, its connection failures as :class:`DatabaseUnreachable`."""
    try:
        connection: asyncpg.Connection = await asyncpg.connect(*args, **kwargs)
    except Exception as exc:
        if not isinstance(exc, (OSError, TimeoutError, *OUTAGES)):
            raise  # a wrong password or database name is a configuration error: a 500
        raise DatabaseUnreachable(f"{type(exc).__name__}: {exc}") from exc
    return connection


async def open_connection(database_url: str) -> asyncpg.Connection:
    """A connection of its own (not the pool's), for a session that holds locks."""
    return await _connect(database_url, timeout=CONNECT_TIMEOUT)


@asynccontextmanager
async def open_gateway_pool(
    database_url: str, *, max_size: int = 10
) -> AsyncIterator[asyncpg.Pool]:
    """A pool that connects on demand: opening it never fails because Postgres is down."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=0,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT,
        max_inactive_connection_lifetime=IDLE_LIFETIME,
        connect=_connect,
    )
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()


def unavailable(detail: str | None = None) -> ServiceUnavailable:
    return ServiceUnavailable(
        detail
        or "The database is unreachable or restarting, so the request was not carried out. "
        f"Send the same request again in {RETRY_AFTER} seconds.",
        code="database_unavailable",
        retry_after=RETRY_AFTER,
    )


async def unavailable_response(request: Request, exc: Exception) -> Response:
    """The exception handler for :data:`OUTAGES`: 503, and the pool's connections renewed."""
    log.warning("Postgres is unavailable (%s: %s); answering 503", type(exc).__name__, exc)
    state = getattr(request.state, "gateway", None)
    if state is not None:
        await state.pool.expire_connections()
    return await api_error_response(request, unavailable())
