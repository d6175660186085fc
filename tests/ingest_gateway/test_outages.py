"""The gateway rides out Postgres: it starts while Postgres is down, answers 503
``database_unavailable`` with Retry-After while it is, says so in ``GET /health``, and
works again by itself once Postgres is back, after a clean stop or a kill -9 of the
postmaster. The Postgres here is the test's own (its own port and data folder, through
scripts/postgres.sh), never the shared one; it is killed by its pid only."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from bench.processes import free_port, local_dir
from ingest_gateway import database
from leadvibe.db import migrate
from leadvibe.settings import Settings
from leadvibe.tenancy import create_token
from tests.gateway import gateway_process
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OwnPostgres:
    """A Postgres server of this module's own, run by scripts/postgres.sh."""

    port: int
    local: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/leadvibe"

    def script(self, action: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PG_PORT": str(self.port), "LEADVIBE_LOCAL_DIR": str(self.local)}
        env.pop("DATABASE_URL", None)
        return subprocess.run(
            [str(ROOT / "scripts/postgres.sh"), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self) -> None:
        result = self.script("start")
        assert result.returncode == 0, result.stdout + result.stderr

    def stop(self) -> None:
        self.script("stop")

    def postmaster_pid(self) -> int:
        return int((self.local / "postgres/data/postmaster.pid").read_text().split()[0])


def _postgres_binaries() -> bool:
    pg_bin = os.environ.get("PG_BIN")
    if pg_bin:
        return Path(pg_bin, "initdb").exists()
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    if not _postgres_binaries():
        pytest.skip("no PostgreSQL server binaries to run a server of the test's own (PG_BIN)")
    server = OwnPostgres(free_port(), local_dir() / f"test-outage-{uuid.uuid4().hex[:8]}")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.local, ignore_errors=True)


@pytest.fixture
async def token(own_postgres: OwnPostgres) -> str:
    """A token of a fresh unit in the own server's migrated database."""
    conn = await asyncpg.connect(own_postgres.url)
    try:
        await migrate(conn)
        return await create_token(conn, "acme", f"unit-{uuid.uuid4().hex[:8]}")
    finally:
        await conn.close()


@asynccontextmanager
async def running_gateway(
    own_postgres: OwnPostgres, settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, httpx.AsyncClient]]:
    """The gateway as a process, over the own Postgres and the test's Kafka topics."""
    async with gateway_process(
        settings, tmp_path / "gateway.log", DATABASE_URL=own_postgres.url
    ) as running:
        yield running


async def _lead(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/leads/ld_nobody", headers={"Authorization": f"Bearer {token}"})


def _assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(database.RETRY_AFTER)
    body = response.json()
    assert body["error"] == "database_unavailable"
    assert "database" in body["detail"]


async def _health(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/health")


async def _until_postgres_down(client: httpx.AsyncClient) -> httpx.Response:
    return await wait_for(
        lambda: _health(client),
        until=lambda r: r.status_code == 503,
        timeout=30,
        what="/health to say Postgres is down",
    )


def _assert_health_says_postgres_down(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(database.RETRY_AFTER)
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"]["ok"] is False
    assert "Postgres" in body["checks"]["postgres"]["detail"]
    assert body["checks"]["kafka"]["ok"] is True


async def _until_works(client: httpx.AsyncClient, token: str) -> None:
    await wait_for(
        lambda: _lead(client, token),
        until=lambda r: r.status_code == 404,  # the lead does not exist: the query ran
        timeout=60,
        what="the gateway to work again",
    )
    health = await _health(client)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert set(health.json()["checks"]) == {"postgres", "kafka"}
    ingested = await client.post(
        "/ingest",
        headers={"Authorization": f"Bearer {token}"},
        json={"lead_id": "ld_1", "event_type": "page_view"},
    )
    assert ingested.status_code == 202, ingested.text


async def test_the_gateway_starts_without_postgres_and_works_once_it_answers(
    own_postgres: OwnPostgres, token: str, settings: Settings, tmp_path: Path
) -> None:
    own_postgres.stop()
    async with running_gateway(own_postgres, settings, tmp_path) as (process, client):
        _assert_health_says_postgres_down(await _until_postgres_down(client))
        _assert_database_unavailable(await _lead(client, token))
        assert (await client.get("/health/live")).status_code == 200

        own_postgres.start()
        await _until_works(client, token)
        assert process.returncode is None


async def test_a_killed_postmaster_means_503_then_the_gateway_recovers_by_itself(
    own_postgres: OwnPostgres, token: str, settings: Settings, tmp_path: Path
) -> None:
    async with running_gateway(own_postgres, settings, tmp_path) as (process, client):
        await _check_kill_and_restart(own_postgres, token, process, client)


async def _check_kill_and_restart(
    own_postgres: OwnPostgres,
    token: str,
    process: asyncio.subprocess.Process,
    client: httpx.AsyncClient,
) -> None:
    await _until_works(client, token)  # the pool holds live connections now

    os.kill(own_postgres.postmaster_pid(), signal.SIGKILL)
    response = await wait_for(
        lambda: _lead(client, token),
        until=lambda r: r.status_code != 404,
        timeout=30,
        what="requests to fail",
    )
    _assert_database_unavailable(response)
    _assert_health_says_postgres_down(await _health(client))

    # Its backends notice the postmaster's death and exit; until they have, a new
    # postmaster refuses to start over their shared memory, so try until it starts.
    await wait_for(
        lambda: asyncio.to_thread(lambda: own_postgres.script("start").returncode == 0),
        timeout=60,
        interval=0.5,
        what="Postgres to start again",
    )
    await _until_works(client, token)
    assert process.returncode is None
