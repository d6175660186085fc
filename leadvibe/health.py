"""``GET /health``: whether a process can do its work now, and if not, what is down.

The body has the one shape of every service's ``/health``::

    {"status": "ok" | "unavailable",
     "checks": {"postgres": {"ok": true, "detail": "..."}, "kafka": {...}, ...}}

answered 200 when every check is ok, 503 otherwise. Consumer processes serve it on
127.0.0.1 at ``LEADVIBE_HEALTH_PORT`` (unset: not served) with the tiny server below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus

import msgspec

from leadvibe.settings import SettingsError

log = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
"""Seconds a client has to send its request line and headers."""


class Check(msgspec.Struct, frozen=True):
    ok: bool
    detail: str
    """What was found, in a sentence an operator can act on."""


Checks = Callable[[], Awaitable[Mapping[str, Check]]]


def health_body(checks: Mapping[str, Check]) -> tuple[int, bytes]:
    """The status code and JSON body of ``GET /health`` for these checks."""
    ok = all(c.ok for c in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": dict(checks)}
    return (200 if ok else 503), msgspec.json.encode(body)


def _error(status: int, code: str, detail: str) -> tuple[int, bytes]:
    return status, msgspec.json.encode({"error": code, "detail": detail})


async def _respond(checks: Checks, request_line: bytes) -> tuple[int, bytes]:
    parts = request_line.decode("latin-1").split()
    if len(parts) != 3:
        return _error(400, "bad_request", "Send an HTTP/1.1 request line.")
    method, target, _ = parts
    if target.split("?", 1)[0] != "/health":
        return _error(404, "not_found", "This port serves GET /health only.")
    if method != "GET":
        return _error(405, "method_not_allowed", "Use GET /health.")
    return health_body(await checks())


@asynccontextmanager
async def serving_health(port: int | None, checks: Checks) -> AsyncIterator[None]:
    """Serve ``GET /health`` on 127.0.0.1:``port`` while the block runs (None: don't)."""
    if port is None:
        yield
        return

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                request_line = await reader.readline()
                while (await reader.readline()).strip():  # headers: not needed
                    pass
            status, body = await _respond(checks, request_line)
            reason = HTTPStatus(status).phrase
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, OSError, ValueError):
            pass  # a client that went away or sent too long a line gets nothing
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
    except OSError as exc:
        raise SettingsError(
            f"LEADVIBE_HEALTH_PORT is {port}, and 127.0.0.1:{port} cannot be listened on"
            f" ({exc.strerror or exc}); choose a free port, or unset it"
        ) from exc
    log.info("serving GET /health on http://127.0.0.1:%d/health", port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
