"""A real webhook receiver on loopback, for the trigger service's tests.

A uvicorn server on 127.0.0.1 and a port the system picks. It records every request it
gets (headers and body), and answers as the test tells it: 200, or a failure for the
first few attempts of each firing, or slowly. Signatures are checked as a receiver would,
with the ``standardwebhooks`` library.

And a tarpit: a server that accepts connections and reads requests but never answers,
until the test leaves it (at most a minute), for the tests of fair delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.waiting import wait_for
from trigger_service.webhooks import ID_HEADER


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def firing_id(self) -> str:
        return self.headers[ID_HEADER]

    def signed_by(self, secret: str) -> bool:
        """Whether the webhook verifies with ``secret``, exactly as a receiver checks it."""
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


@dataclass
class Receiver:
    """What the server received, and how it answers (change the fields at any time)."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    """Answer 500 to the first ``fail_first`` requests of each firing."""
    delay_for: dict[str, float] = field(default_factory=dict)
    """Seconds to wait before answering, by path (a slow receiver)."""
    _seen: dict[str, int] = field(default_factory=dict)

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def firing_ids(self, path: str | None = None) -> set[str]:
        return {r.firing_id for r in self.received if path is None or r.path == path}

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        got = Received(request.url.path, dict(request.headers), body)
        self.received.append(got)
        delay = self.delay_for.get(got.path)
        if delay:
            await asyncio.sleep(delay)
        firing = got.headers.get(ID_HEADER, "")
        self._seen[firing] = self._seen.get(firing, 0) + 1
        if self._seen[firing] <= self.fail_first:
            return Response("not now", status_code=500)
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    receiver.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(receiver.app(), log_level="warning", lifespan="off", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:

        async def started() -> bool:
            if task.done():
                task.result()  # raises what stopped the server
            return server.started

        await wait_for(started, timeout=10, interval=0.01, what="the webhook receiver")
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@dataclass
class Tarpit:
    """Requests it got and connections it holds; it never answers."""

    url: str = ""
    requests: int = 0
    holding: int = 0
    most_held: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.holding += 1
        self.most_held = max(self.most_held, self.holding)
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                await self._release.wait()
        finally:
            self.holding -= 1
            writer.close()

    async def close(self) -> None:
        """Drop every connection held, so that the attempts hanging on them end now."""
        self._release.set()
        for writer in self._writers:
            writer.close()
        await asyncio.sleep(0)  # let the handlers see it


@asynccontextmanager
async def running_tarpit(*, bound: float = 60.0) -> AsyncIterator[Tarpit]:
    """A server on loopback that reads requests and never answers, until the block ends
    (or ``bound`` seconds pass: it closes its connections then, whatever the test does)."""
    tarpit = Tarpit()
    server = await asyncio.start_server(tarpit.hold, "127.0.0.1", 0)
    tarpit.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    loop = asyncio.get_running_loop()
    deadline = loop.call_later(bound, lambda: loop.create_task(tarpit.close()))
    try:
        yield tarpit
    finally:
        deadline.cancel()
        server.close()
        await tarpit.close()
        await server.wait_closed()
