"""The shared consume loop against the real broker and database: offsets live in Postgres,
bad records go to the dead letters, and nothing is applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from leadvibe.consuming import Consumed, ConsumeLoop, Rejected, load_offsets
from leadvibe.db import Connection
from leadvibe.logs import json_formatter
from leadvibe.producing import open_producer, publish_all
from leadvibe.service import run_consumer
from leadvibe.settings import Settings
from schemas import DeadLetter, LeadEvent, decode, encode
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

GROUP = "test-loop"


def _event(n: int, event_type: str = "page_view") -> LeadEvent:
    return LeadEvent(
        event_id=f"e{n}",
        unit_id="ou_test",
        lead_id=f"ld_{n % 7}",
        event_type=event_type,
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        source="api",
    )


async def _apply(conn: Connection, batch: Sequence[Consumed[LeadEvent]]) -> list[Rejected]:
    """Appends every event (no de-duplication: a double application would show).

    A ``poison`` event's id is written with a NUL character, which Postgres cannot store
    (a record fault); a ``refused`` one is rejected by the handler."""
    rejected = []
    for item in batch:
        if item.record.event_type == "refused":
            rejected.append(Rejected(item.partition, item.offset, "refused by the handler"))
    await conn.executemany(
        "INSERT INTO applied (event_id) VALUES ($1)",
        [
            (i.record.event_id + ("\x00" if i.record.event_type == "poison" else ""),)
            for i in batch
            if i.record.event_type != "refused"
        ],
    )
    return rejected


@contextlib.asynccontextmanager
async def _loop_running(settings: Settings, handler: object = _apply) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consumer(
            settings,
            topic=settings.topics.events,
            group=GROUP,
            record_type=LeadEvent,
            make_handler=lambda pool, producer: handler,  # type: ignore[arg-type,return-value]
            stop=stop,
            max_records=50,
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _publish(settings: Settings, values: list[bytes]) -> None:
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        await publish_all(producer, settings.topics.events, [(b"k", v) for v in values])


async def _applied(pool: asyncpg.Pool) -> list[str]:
    return [r["event_id"] for r in await pool.fetch("SELECT event_id FROM applied")]


async def _dead_letters(settings: Settings, count: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        settings.topics.deadletter,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex}",
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(20):
            while len(letters) < count:
                record = await consumer.getone()
                letters.append(decode(record.value, DeadLetter))
    finally:
        await consumer.stop()
    return letters


@pytest.fixture
async def applied_table(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE applied (event_id text NOT NULL)")


@pytest.mark.usefixtures("applied_table")
async def test_each_record_applied_once_across_restarts(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await _publish(settings, [encode(_event(n)) for n in range(100)])
    async with _loop_running(settings):
        await wait_for(lambda: _applied(pool), until=lambda a: len(a) >= 100, what="100 applied")

    await _publish(settings, [encode(_event(n)) for n in range(100, 150)])
    async with _loop_running(settings):  # a new member: it must resume at the stored offsets
        await wait_for(lambda: _applied(pool), until=lambda a: len(a) >= 150, what="150 applied")

    applied = await _applied(pool)
    assert sorted(applied) == sorted(f"e{n}" for n in range(150))
    stored = await load_offsets(pool, GROUP, settings.topics.events)
    assert sum(stored.values()) == 150


@pytest.mark.usefixtures("applied_table")
async def test_bad_records_go_to_dead_letters_and_the_partition_moves_on(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="leadvibe.consuming")
    values = [
        encode(_event(1)),
        b"{not json",
        encode(_event(2, "poison")),
        encode(_event(3, "refused")),
        encode(_event(4)),
    ]
    await _publish(settings, values)  # one key: all in one partition, in this order
    async with _loop_running(settings):
        await wait_for(lambda: _applied(pool), until=lambda a: len(a) >= 2, what="good records")
        letters = await _dead_letters(settings, 3)

    assert sorted(await _applied(pool)) == ["e1", "e4"]
    reasons = sorted(letter.reason for letter in letters)
    assert reasons[0].startswith("cannot decode")
    assert reasons[1].startswith("handler failed: CharacterNotInRepertoireError: invalid byte")
    assert reasons[2] == "refused by the handler"
    assert {letter.value for letter in letters} == set(values[1:4])
    assert all(letter.consumer_group == GROUP for letter in letters)
    # Each dead letter has a log line that, as JSON, names its topic, partition and offset.
    lines = [
        json.loads(json_formatter("scorer").format(record))
        for record in caplog.records
        if record.getMessage().startswith(("dead-lettered", "undecodable"))
    ]
    assert sorted((line["topic"], line["partition"], line["offset"]) for line in lines) == sorted(
        (letter.topic, letter.partition, letter.offset) for letter in letters
    )
    assert {line["service"] for line in lines} == {"scorer"}


@pytest.mark.usefixtures("applied_table")
async def test_a_poison_record_is_found_by_halves_not_record_by_record(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """One poison record in a batch of 50: the handler runs on halves of halves, about
    2 log2(50) times, not once a record (which cost 15-18 ms a record in the scorer)."""
    sizes: list[int] = []

    async def counting(conn: Connection, batch: Sequence[Consumed[LeadEvent]]) -> list[Rejected]:
        sizes.append(len(batch))
        return await _apply(conn, batch)

    values = [encode(_event(n, "poison" if n == 37 else "page_view")) for n in range(50)]
    await _publish(settings, values)  # one key: one partition, one batch of max_records
    async with _loop_running(settings, counting):
        await wait_for(lambda: _applied(pool), until=lambda a: len(a) >= 49, what="good records")
        [letter] = await _dead_letters(settings, 1)

    assert sorted(await _applied(pool)) == sorted(f"e{n}" for n in range(50) if n != 37)
    assert letter.value == values[37]
    assert sum(sizes) <= 3 * 50, sizes  # the batch, then halves: about twice its work
    assert len(sizes) <= 1 + 2 * 6, sizes  # 2 per halving, log2(50) < 6 halvings
    assert sizes.count(1) <= 2, sizes


@pytest.mark.usefixtures("applied_table")
async def test_a_record_of_a_megabyte_is_dead_lettered_truncated_and_the_partition_moves_on(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Its dead letter in full (base64) would be over the producer's 1 MiB: it is cut to fit,
    with the whole record's size and digest, rather than retried forever."""
    poison = b"{" + b"x" * 1_000_000  # undecodable, 1 MB
    await _publish(settings, [encode(_event(1)), poison, encode(_event(2))])
    async with _loop_running(settings):
        await wait_for(lambda: _applied(pool), until=lambda a: len(a) >= 2, what="good records")
        [letter] = await _dead_letters(settings, 1)

    assert sorted(await _applied(pool)) == ["e1", "e2"]
    assert letter.reason.startswith("cannot decode")
    assert letter.value_truncated
    assert letter.value is not None
    assert poison.startswith(letter.value)
    assert letter.value_size == len(poison)
    assert letter.value_sha256 == hashlib.sha256(poison).hexdigest()
    assert sum((await load_offsets(pool, GROUP, settings.topics.events)).values()) == 3


@pytest.mark.usefixtures("applied_table")
async def test_records_below_the_stored_offset_are_never_applied(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A member that lost its partition mid-batch cannot re-apply: the stored offset fences it."""
    await _publish(settings, [encode(_event(n)) for n in range(10)])
    records = await _read(settings, 10)
    partition = records[0].partition
    # Meanwhile another member applied the first 6 records of that partition.
    await pool.execute(
        "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)"
        " VALUES ($1, $2, $3, 6)",
        GROUP,
        settings.topics.events,
        partition,
    )
    async with open_producer(settings.kafka_bootstrap_servers) as producer:
        loop = ConsumeLoop(
            consumer=None,
            producer=producer,
            pool=pool,
            topic=settings.topics.events,
            deadletter_topic=settings.topics.deadletter,
            group=GROUP,
            record_type=LeadEvent,
            handler=_apply,
        )
        await loop.process(records)
    assert sorted(await _applied(pool)) == [f"e{n}" for n in range(6, 10)]
    assert await load_offsets(pool, GROUP, settings.topics.events) == {partition: 10}


async def _read(settings: Settings, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        settings.topics.events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while len(records) < count:
                records.append(await consumer.getone())
    finally:
        await consumer.stop()
    return records
