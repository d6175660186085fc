"""The token cache: fresh principals without a query, stale or forgotten ones asked again."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from leadvibe.tenancy import Principal, TokenCache, hash_token


class FakeConnection:
    """Answers the token query from a dict, counting the queries."""

    def __init__(self) -> None:
        self.rows: dict[bytes, dict[str, str]] = {}
        self.queries = 0
        self.asked = asyncio.Event()

    async def fetchrow(self, query: str, token_hash: bytes) -> dict[str, str] | None:
        """The row as it is now, answered after a turn of the loop (as over a network)."""
        self.queries += 1
        row = self.rows.get(token_hash)
        answer = None if row is None else dict(row)
        self.asked.set()
        await asyncio.sleep(0)
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def conn_of(fake: FakeConnection) -> asyncpg.Pool:
    connection: Any = fake
    return connection  # type: ignore[no-any-return]


async def test_a_fresh_principal_costs_no_query_and_a_stale_one_is_asked_again() -> None:
    fake, clock = FakeConnection(), Clock()
    fake.rows[hash_token("lv_a")] = {"org_id": "org_1", "active_unit_id": "ou_1"}
    cache = TokenCache(1.0, clock=clock)
    first = await cache.authenticate(conn_of(fake), "lv_a")
    assert first == Principal("org_1", "ou_1", hash_token("lv_a"))
    clock.now += 0.9
    assert await cache.authenticate(conn_of(fake), "lv_a") == first
    assert fake.queries == 1
    fake.rows[hash_token("lv_a")]["active_unit_id"] = "ou_2"  # switched through another process
    clock.now += 0.2
    switched = await cache.authenticate(conn_of(fake), "lv_a")
    assert switched is not None
    assert switched.unit_id == "ou_2"
    assert fake.queries == 2


async def test_a_revoked_token_is_refused_once_its_entry_is_stale() -> None:
    fake, clock = FakeConnection(), Clock()
    fake.rows[hash_token("lv_a")] = {"org_id": "org_1", "active_unit_id": "ou_1"}
    cache = TokenCache(1.0, clock=clock)
    assert await cache.authenticate(conn_of(fake), "lv_a") is not None
    del fake.rows[hash_token("lv_a")]
    clock.now += 1.01
    assert await cache.authenticate(conn_of(fake), "lv_a") is None
    assert await cache.authenticate(conn_of(fake), "lv_a") is None
    assert fake.queries == 3  # unknown tokens are never remembered


async def test_forget_asks_the_database_at_the_next_use() -> None:
    fake = FakeConnection()
    fake.rows[hash_token("lv_a")] = {"org_id": "org_1", "active_unit_id": "ou_1"}
    cache = TokenCache(60.0)
    await cache.authenticate(conn_of(fake), "lv_a")
    cache.forget(hash_token("lv_a"))
    await cache.authenticate(conn_of(fake), "lv_a")
    assert fake.queries == 2


async def test_a_ttl_of_zero_asks_every_time() -> None:
    fake = FakeConnection()
    fake.rows[hash_token("lv_a")] = {"org_id": "org_1", "active_unit_id": "ou_1"}
    cache = TokenCache(0.0)
    for _ in range(3):
        await cache.authenticate(conn_of(fake), "lv_a")
    assert fake.queries == 3


async def test_requests_that_find_the_entry_stale_together_share_one_query() -> None:
    fake = FakeConnection()
    fake.rows[hash_token("lv_a")] = {"org_id": "org_1", "active_unit_id": "ou_1"}
    cache = TokenCache(1.0)
    answers = await asyncio.gather(*(cache.authenticate(conn_of(fake), "lv_a") for _ in range(20)))
    assert len(set(answers)) == 1
    assert fake.queries == 1


async def test_an_answer_from_before_forget_is_not_cached() -> None:
    fake = FakeConnection()
    fake.rows[hash_token("lv_a")] = {"org_id": "org_1", "active_unit_id": "ou_1"}
    cache = TokenCache(60.0)
    lookup = asyncio.ensure_future(cache.authenticate(conn_of(fake), "lv_a"))
    await fake.asked.wait()  # the query has read the row (ou_1) and is on its way back
    fake.rows[hash_token("lv_a")]["active_unit_id"] = "ou_2"
    cache.forget(hash_token("lv_a"))  # the switch is answered meanwhile
    await lookup
    after = await cache.authenticate(conn_of(fake), "lv_a")
    assert after is not None
    assert after.unit_id == "ou_2"
