"""The consume loop shared by the scorer and the trigger service.

It gives exactly-once *effects* over at-least-once delivery (DESIGN.md decision 2):

- a ``getmany()`` batch is handled in one Postgres transaction that also stores the next
  offset of each partition (``consumer_offsets``); Kafka's own commits are not used;
- on start and on every assignment the consumer seeks to the stored offsets;
- inside the transaction the stored offsets are locked and records below them skipped,
  so a consumer that lost its partition in a rebalance cannot apply a record twice;
- a record that cannot be decoded, or that the handler rejects, is published to the
  dead-letter topic with the reason, and the partition moves on;
- if handling a batch raises, the batch is retried record by record, each under a
  savepoint, so one poison record goes to the dead letters instead of blocking the rest.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from leadvibe.db import Connection
from leadvibe.producing import publish_all
from schemas import DeadLetter, DecodeError, decode, encode

log = logging.getLogger(__name__)

R = TypeVar("R", bound=msgspec.Struct)


class RetryBatch(Exception):
    """Raised by a handler to have its batch retried whole after a pause.

    For a condition that is not the records' fault and that time resolves, such as a
    race with another consumer that a handler could not settle in a few attempts.
    """


# Errors of the infrastructure, not of a record: the batch is retried whole after a pause.
TRANSIENT_ERRORS = (
    RetryBatch,
    OSError,
    asyncio.TimeoutError,
    KafkaError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


class Consumed(msgspec.Struct, Generic[R], frozen=True):
    """A decoded record with where it came from.

    A Struct rather than a frozen dataclass: one is made per record, and a frozen
    dataclass takes fifteen times as long to make (1 us, a tenth of the scorer's work).
    """

    record: R
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int = -1
    """The Kafka record's timestamp (milliseconds since the epoch; -1 when it has none)."""


@dataclass(frozen=True)
class Rejected:
    """A record the handler refuses for good (e.g. its unit no longer exists)."""

    partition: int
    offset: int
    reason: str


Handler = Callable[[Connection, Sequence[Consumed[R]]], Awaitable[Sequence[Rejected]]]
"""Applies a batch inside the caller's transaction; returns the records it rejects."""


async def load_offsets(conn: Connection | asyncpg.Pool, group: str, topic: str) -> dict[int, int]:
    """The stored next offset of each partition the group has consumed."""
    rows = await conn.fetch(
        """SELECT partition, next_offset FROM consumer_offsets
           WHERE consumer_group = $1 AND topic = $2""",
        group,
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def _lock_offsets(
    conn: Connection, group: str, topic: str, partitions: list[int]
) -> dict[int, int]:
    # Insert first so FOR UPDATE has a row to lock even for a partition never seen.
    await conn.execute(
        """INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
           SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p
           ON CONFLICT DO NOTHING""",
        group,
        topic,
        partitions,
    )
    rows = await conn.fetch(
        """SELECT partition, next_offset FROM consumer_offsets
           WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])
           ORDER BY partition FOR UPDATE""",
        group,
        topic,
        partitions,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def _store_offsets(
    conn: Connection, group: str, topic: str, next_offsets: dict[int, int]
) -> None:
    await conn.execute(
        """UPDATE consumer_offsets AS o SET next_offset = n.next_offset, updated_at = now()
           FROM unnest($3::int[], $4::bigint[]) AS n (partition, next_offset)
           WHERE o.consumer_group = $1 AND o.topic = $2 AND o.partition = n.partition
             AND o.next_offset < n.next_offset""",
        group,
        topic,
        list(next_offsets),
        list(next_offsets.values()),
    )


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumeLoop[R]) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Nothing to flush: every batch commits its offsets before the next getmany().
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._loop.seek_to_stored(assigned)


class ConsumeLoop(Generic[R]):
    """One consumer group member: decode, handle in a transaction with the offsets, repeat."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        pool: asyncpg.Pool,
        topic: str,
        deadletter_topic: str,
        group: str,
        record_type: type[R],
        handler: Handler[R],
        max_records: int = 5000,
        retry_pause: float = 1.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.pool = pool
        self.topic = topic
        self.deadletter_topic = deadletter_topic
        self.group = group
        self.record_type = record_type
        self.handler = handler
        self.max_records = max_records
        self.retry_pause = retry_pause
        self.batches = 0
        """Batches committed so far (for tests and progress logs)."""

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], listener=_SeekToStoredOffsets(self))

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        stored = await load_offsets(self.pool, self.group, self.topic)
        for tp in partitions:
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first."""
        self.subscribe()
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            try:
                await self.process(records)
            except TRANSIENT_ERRORS as exc:
                log.warning(
                    "batch failed (%s: %s); retrying from stored offsets", type(exc).__name__, exc
                )
                await self._pause_and_rewind(stop, set(batch))

    async def _pause_and_rewind(self, stop: asyncio.Event, partitions: set[TopicPartition]) -> None:
        # getmany() has moved the positions past the failed batch: until the rewind to the
        # stored offsets succeeds, fetching on would apply later records and store offsets
        # past the failed ones, which would then never be applied. So retry the rewind
        # itself until it succeeds (or the loop stops; positions are never committed).
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.retry_pause)
            if stop.is_set():
                return
            try:
                await self.seek_to_stored(partitions & self.consumer.assignment())
                return
            except TRANSIENT_ERRORS as exc:
                log.warning("cannot read stored offsets yet (%s); trying again", exc)

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle one batch: effects, dead letters and offsets commit together."""
        async with self.pool.acquire() as conn, conn.transaction():
            partitions = sorted({r.partition for r in records})
            stored = await _lock_offsets(conn, self.group, self.topic, partitions)
            fresh = [r for r in records if r.offset >= stored[r.partition]]
            raw = {(r.partition, r.offset): r for r in fresh}
            decoded, undecodable = self._decode(fresh)
            try:
                async with conn.transaction():  # savepoint: undone alone if the handler fails
                    rejected = await self.handler(conn, decoded)
            except TRANSIENT_ERRORS:
                raise
            except Exception:
                log.exception(
                    "batch handler failed; handling its %d records one by one", len(decoded)
                )
                rejected = await self._one_by_one(conn, decoded)
            dead = [self._dead_letter(raw, r) for r in [*undecodable, *rejected]]
            if dead:
                await publish_all(self.producer, self.deadletter_topic, dead)
                log.warning("sent %d record(s) to %s", len(dead), self.deadletter_topic)
            next_offsets: dict[int, int] = {}
            for r in records:
                next_offsets[r.partition] = max(next_offsets.get(r.partition, 0), r.offset + 1)
            await _store_offsets(conn, self.group, self.topic, next_offsets)
        self.batches += 1

    async def _one_by_one(self, conn: Connection, decoded: Sequence[Consumed[R]]) -> list[Rejected]:
        rejected: list[Rejected] = []
        for item in decoded:
            try:
                async with conn.transaction():
                    rejected.extend(await self.handler(conn, [item]))
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                reason = f"handler failed: {type(exc).__name__}: {exc}"
                rejected.append(Rejected(item.partition, item.offset, reason))
        return rejected

    def _decode(
        self, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[Consumed[R]], list[Rejected]]:
        decoded: list[Consumed[R]] = []
        undecodable: list[Rejected] = []
        record_type = self.record_type
        for r in records:
            try:
                record = decode(r.value, record_type)
            except DecodeError as exc:
                log.warning(
                    "undecodable record at %s[%d]@%d: %s", self.topic, r.partition, r.offset, exc
                )
                undecodable.append(Rejected(r.partition, r.offset, f"cannot decode: {exc}"))
                continue
            decoded.append(Consumed(record, r.partition, r.offset, r.key, r.timestamp))
        return decoded, undecodable

    def _dead_letter(
        self, raw_records: dict[tuple[int, int], ConsumerRecord[bytes, bytes]], rejected: Rejected
    ) -> tuple[bytes | None, bytes]:
        raw = raw_records[(rejected.partition, rejected.offset)]
        letter = DeadLetter(
            consumer_group=self.group,
            topic=self.topic,
            partition=rejected.partition,
            offset=rejected.offset,
            key=raw.key,
            value=raw.value,
            reason=rejected.reason,
            failed_at=datetime.now(UTC),
        )
        return raw.key, encode(letter)


@asynccontextmanager
async def open_consumer(
    bootstrap_servers: str, group: str | None, *, partition_fetch_mb: int = 4
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer that never commits to Kafka: offsets live in Postgres.

    ``group`` None gives a consumer outside any group (a reader that assigns partitions).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=partition_fetch_mb * 1024 * 1024,
        fetch_max_bytes=8 * partition_fetch_mb * 1024 * 1024,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so a service drains its batch and exits cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
