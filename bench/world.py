"""What one benchmark run creates on the shared servers, and drops again at its end.

Every database is ``bench_<run id>_<purpose>``, cloned from a migrated template of the
same run, and every topic is ``bench.<run id>.<purpose>.<topic>``: the run never reads
or writes the ``leadvibe`` database and topics of ``make run``, nor those of another run
or test session on the same servers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from leadvibe.db import migrate
from leadvibe.settings import Settings
from leadvibe.topics import ensure_topics
from schemas import Topics

log = logging.getLogger(__name__)

PARTITIONS = 6
"""Partitions of the benchmark's topics: the default of ``leadvibe topics create``."""


def database_url(base: str, name: str) -> str:
    """``base`` with its database name replaced."""
    return base.rsplit("/", 1)[0] + "/" + name


@dataclass
class World:
    """The run's template database, and the databases and topics made from it."""

    base: Settings
    run_id: str
    partitions: int = PARTITIONS
    databases: list[str] = field(default_factory=list)

    @property
    def template(self) -> str:
        return f"bench_{self.run_id}_template"

    def namespace(self, purpose: str) -> str:
        return f"bench.{self.run_id}.{purpose}"

    async def topics(self, purpose: str) -> Topics:
        """Fresh topics of ``purpose`` (created now, deleted at the end)."""
        topics = Topics(self.namespace(purpose))
        await ensure_topics(self.base.kafka_bootstrap_servers, topics, self.partitions)
        return topics

    async def database(self, purpose: str) -> str:
        """The URL of a fresh, migrated database of ``purpose`` (dropped by :meth:`drop`)."""
        name = f"bench_{self.run_id}_{purpose}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.databases.append(name)
        return database_url(self.base.database_url, name)

    def settings(self, topics: Topics, database_url: str) -> Settings:
        """The base settings pointed at one of this run's databases and namespaces."""
        return replace(
            self.base,
            database_url=database_url,
            topics=topics,
            events_partitions=self.partitions,
        )

    async def drop(self, url: str) -> None:
        """Drop a database of this run now rather than at the end (they add up)."""
        name = url.rsplit("/", 1)[1]
        assert name.startswith(f"bench_{self.run_id}_"), name
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.databases:
            self.databases.remove(name)

    async def create_template(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.template}"')
        conn = await asyncpg.connect(database_url(self.base.database_url, self.template))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def clean_up(self) -> None:
        """Drop every database and delete every topic of this run."""
        for name in [*self.databases, self.template]:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.databases.clear()
        prefix = f"bench.{self.run_id}."
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.base.kafka_bootstrap_servers, request_timeout_ms=30_000
        )
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if ours:
                await admin.delete_topics(ours, timeout_ms=30_000)
        finally:
            await admin.close()

    async def _admin(self, statement: str) -> None:
        conn = await asyncpg.connect(self.base.database_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()


@asynccontextmanager
async def open_world(base: Settings, *, partitions: int = PARTITIONS) -> AsyncIterator[World]:
    """A world for one run, cleaned up however the run ends."""
    world = World(base, uuid.uuid4().hex[:8], partitions)
    try:
        await world.create_template()
        yield world
    finally:
        try:
            await world.clean_up()
        except Exception:  # the run's own error matters more; say what is left behind
            log.exception("could not clean up the databases and topics of run %s", world.run_id)
