"""Fixtures: where Kafka and Postgres come from, and a fresh world for every test.

Integration tests use the servers named by KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL
(``make test`` starts local ones and sets both); without them, containers that
testcontainers starts when a Docker engine answers (``make test-containers``); without
either, they are skipped (tests/containers.py). Each test gets a database of its own,
cloned from a migrated template, and a topic namespace of its own, so tests never see
each other's data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace

import asyncpg
import httpx
import pytest

from leadvibe.db import migrate, open_pool
from leadvibe.settings import Settings
from leadvibe.tenancy import create_token, ensure_unit
from leadvibe.topics import delete_topics, ensure_topics
from schemas import Topics
from scorer.service import run as run_scorer
from tests.containers import (
    SKIP_REASON,
    Servers,
    docker_engine_answers,
    provide_servers,
    servers_from_env,
)
from tests.gateway import gateway_client
from trigger_service.delivery import DeliveryPolicy
from trigger_service.service import run as run_triggers

# One template per pytest session, so that concurrent sessions on one server never drop
# each other's template.
TEMPLATE_DB = f"leadvibe_test_template_{uuid.uuid4().hex[:8]}"
TEST_PARTITIONS = 3


_NO_SERVERS = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration = any("integration" in item.keywords for item in items)
    config.stash[_NO_SERVERS] = (
        integration and servers_from_env() is None and not docker_engine_answers()
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Skipped from here rather than by a mark, so that pytest reports them on one line.
    if item.config.stash.get(_NO_SERVERS, False) and "integration" in item.keywords:
        pytest.skip(SKIP_REASON)


def _database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """Kafka and Postgres for the session, from the environment or from containers."""
    with provide_servers() as servers:
        yield servers


@pytest.fixture(scope="session")
async def base_settings(servers: Servers) -> Settings:
    settings = Settings.from_env()
    return replace(settings, allow_private_webhooks=True, webhook_secret="test-webhook-secret")


@pytest.fixture(scope="session")
async def template_database(base_settings: Settings) -> AsyncIterator[str]:
    """A migrated database that every test's database is cloned from."""
    admin = await asyncpg.connect(base_settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(_database_url(base_settings.database_url, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield TEMPLATE_DB
    admin = await asyncpg.connect(base_settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def settings(base_settings: Settings, template_database: str) -> AsyncIterator[Settings]:
    """Settings pointing at a fresh database and a fresh topic namespace."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base_settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await admin.close()
    topics = Topics(f"test.{name}")
    await ensure_topics(base_settings.kafka_bootstrap_servers, topics, TEST_PARTITIONS)
    yield replace(
        base_settings,
        database_url=_database_url(base_settings.database_url, name),
        topics=topics,
        events_partitions=TEST_PARTITIONS,
    )
    # Thousands of tests' topics would outgrow a broker with a small heap: delete them.
    await delete_topics(base_settings.kafka_bootstrap_servers, topics)
    admin = await asyncpg.connect(base_settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with open_pool(settings.database_url) as pool:
        yield pool


@dataclass(frozen=True)
class Tenant:
    """An organisation with one unit and a token active on it."""

    org_id: str
    unit_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_tenant(pool: asyncpg.Pool, org: str, unit: str) -> Tenant:
    async with pool.acquire() as conn:
        token = await create_token(conn, org, unit)
        org_id, unit_id = await ensure_unit(conn, org, unit)
    return Tenant(org_id=org_id, unit_id=unit_id, token=token)


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    return await make_tenant(pool, "acme", "marketing")


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the gateway app, in process, over the real Kafka and Postgres."""
    async with gateway_client(settings) as client:
        yield client


@pytest.fixture
async def scorer(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """The scorer, in process, consuming the test's events topic until the test ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_scorer(settings, stop=stop))
    yield task
    stop.set()
    await asyncio.wait_for(task, timeout=30)


TEST_DELIVERY_POLICY = DeliveryPolicy(
    timeout=2.0, backoff_base=0.1, backoff_max=0.5, max_attempts=5, idle_poll=0.2
)
"""Webhook retries in tenths of a second, so that tests of retries take no time."""


@pytest.fixture
async def trigger_service(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """The trigger service, in process, consuming the test's scored topic until the test ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_triggers(settings, stop=stop, policy=TEST_DELIVERY_POLICY))
    yield task
    stop.set()
    await asyncio.wait_for(task, timeout=30)
