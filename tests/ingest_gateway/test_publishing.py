"""Kafka down or too slow: the gateway starts anyway and answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from ingest_gateway import publishing
from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.gateway import gateway_client
from tests.ingest_gateway.helpers import published_count

pytestmark = pytest.mark.integration

CSV = b"lead_id,event_type\nld_1,page_view\n"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def silent_broker() -> AsyncIterator[str]:
    """An address that accepts connections and never answers: a Kafka far too slow."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    for writer in connections:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_kafka_unreachable_means_503_at_once_and_the_gateway_still_starts(
    settings: Settings, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    down = replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{closed_port()}")
    async with gateway_client(down) as gateway:
        assert (await gateway.get("/health/live")).status_code == 200
        health = await gateway.get("/health")
        assert health.status_code == 503
        assert health.json()["checks"]["kafka"]["ok"] is False
        assert health.json()["checks"]["postgres"]["ok"] is True
        started = time.monotonic()
        response = await gateway.post(
            "/import", headers=tenant.headers, files={"file": ("events.csv", CSV)}
        )
        assert time.monotonic() - started < publishing.CONNECT_TIMEOUT
        assert response.status_code == 503
        assert response.headers["Retry-After"] == str(publishing.RETRY_AFTER)
        assert response.json()["error"] == "kafka_unavailable"
        assert "nothing was accepted" in response.json()["detail"]
        live = await gateway.post(
            "/ingest", headers=tenant.headers, json={"lead_id": "x", "event_type": "a"}
        )
        assert live.status_code == 503
        assert "Retry-After" in live.headers
    assert await pool.fetchval("SELECT count(*) FROM imports") == 0
    assert await published_count(settings) == 0


async def test_kafka_that_never_answers_means_503_within_the_bound(
    settings: Settings, tenant: Tenant, silent_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publishing, "CONNECT_TIMEOUT", 0.5)
    silent = replace(settings, kafka_bootstrap_servers=silent_broker)
    async with gateway_client(silent) as gateway:
        started = time.monotonic()
        response = await gateway.post(
            "/import", headers=tenant.headers, files={"file": ("events.csv", CSV)}
        )
        assert response.status_code == 503
        assert time.monotonic() - started < 0.5 + 1.0
        assert response.headers["Retry-After"] == str(publishing.RETRY_AFTER)


async def test_acknowledgements_too_slow_mean_503_and_a_failed_import_a_retry_completes(
    settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gateway_client(settings) as gateway:
        headers = {**tenant.headers, "Idempotency-Key": "slow"}
        monkeypatch.setattr(publishing, "PUBLISH_TIMEOUT", 1e-6)
        response = await gateway.post(
            "/import", headers=headers, files={"file": ("events.csv", CSV)}
        )
        assert response.status_code == 503
        assert "same Idempotency-Key" in response.json()["detail"]
        monkeypatch.undo()

        retried = await gateway.post(
            "/import", headers=headers, files={"file": ("events.csv", CSV)}
        )
        assert retried.status_code == 202
        import_id = retried.json()["import_id"]
        detail = (await gateway.get(f"/imports/{import_id}", headers=tenant.headers)).json()
        assert (detail["status"], detail["imported"], detail["failure"]) == ("completed", 1, None)


async def forward(port: int, to: str) -> asyncio.Server:
    """Start forwarding connections on ``port`` to ``to`` (host:port)."""
    host, target = to.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(target))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return await asyncio.start_server(connect, "127.0.0.1", port)


async def test_a_gateway_started_while_kafka_was_down_publishes_once_it_answers(
    settings: Settings, tenant: Tenant
) -> None:
    port = closed_port()
    later = replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{port}")
    async with gateway_client(later) as gateway:
        files = {"file": ("events.csv", CSV)}
        first = await gateway.post("/import", headers=tenant.headers, files=files)
        assert first.status_code == 503
        # Kafka comes up (here: its address starts forwarding to the real broker).
        server = await forward(port, settings.kafka_bootstrap_servers)
        try:
            second = await gateway.post("/import", headers=tenant.headers, files=files)
            assert second.status_code == 202, second.text
        finally:
            server.close()
    assert await published_count(settings) == 1
