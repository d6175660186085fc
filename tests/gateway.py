"""The gateway app in process, as an HTTP client: the ``gateway`` fixture and tests that
need an app over other settings both open it here; and the gateway as a process of its own,
for tests that kill it or the servers under it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from bench.processes import free_port
from ingest_gateway.app import create_app
from leadvibe.settings import Settings
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def gateway_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a gateway app over ``settings``, its lifespan run around it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state or {})
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def gateway_environment(settings: Settings, port: int, **env: str) -> dict[str, str]:
    """The environment of ``python -m ingest_gateway`` over ``settings`` on ``port``."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
        "LEADVIBE_PORT": str(port),
        "LEADVIBE_LOG_LEVEL": "warning",
        **env,
    }


@asynccontextmanager
async def gateway_process(
    settings: Settings, log: Path, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, httpx.AsyncClient]]:
    """``python -m ingest_gateway`` over ``settings`` (``env`` overrides its environment),
    on a free port, once it answers its liveness: whether or not Postgres and Kafka do.

    Its output goes to ``log``; it is stopped (SIGTERM) at the end unless it has exited.
    """
    port = free_port()
    environment = gateway_environment(settings, port, **env)
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ingest_gateway",
            env=environment,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:

        async def live() -> int:
            assert process.returncode is None, f"the gateway exited; its output is in {log}"
            try:
                return (await client.get("/health/live")).status_code
            except httpx.TransportError:
                return 0

        await wait_for(live, until=lambda s: s == 200, timeout=30, what="the gateway to start")
        yield process, client
    finally:
        await client.aclose()
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), timeout=30)
