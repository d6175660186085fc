"""The consume loop shared by the scorer and the trigger service.

It gives exactly-once *effects* over at-least-once delivery (DESIGN.md decision 2):

- a ``getmany()`` batch is handled in one Postgres transaction that also stores the next
  offset of each partition (``consumer_offsets``); Kafka's own commits are not used;
- on start and on every assignment the consumer seeks to the stored offsets;
- inside the transaction the stored offsets are locked and records below them skipped,
  so a consumer that lost its partition in a rebalance cannot apply a record twice;
- failures are classified by cause (:mod:`leadvibe.failures`). A **record fault** (the
  record cannot be decoded, the handler rejects it, or storing it fails on its values)
  sends that record to the dead letters and the partition moves on: when the batch
  fails on one, its halves are retried, each under a savepoint, and the half that fails
  is halved again, down to the records at fault (about twice the batch's work for one
  poison record, where record by record cost 15-18 ms a record);
- a **system fault** (connection, permission, schema, timeout, disk, broker, or a bug),
  in the batch or in any single record, dead-letters nothing and stores no offset: the
  batch's partitions stop, the loop rewinds to the stored offsets and tries again after
  a capped, jittered backoff, logging once when they stop and once when they resume;
  :attr:`ConsumeLoop.stopped` says which, why and since when (for ``/health``);
- a dead letter always fits: an oversized value is kept truncated, with its size and
  SHA-256 digest (:mod:`leadvibe.dead_letters`);
- a handler that keeps state between batches (a :class:`Stateful` one, the scorer) is
  told to forget it on every partition assignment and revocation, and whenever a batch
  it handled did not commit: its state then holds changes that are not so.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar, runtime_checkable

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from leadvibe.backoff import Backoff, pause
from leadvibe.db import Connection
from leadvibe.dead_letters import dead_letter
from leadvibe.failures import Fault, RetryBatch, classify, describe
from leadvibe.producing import publish_all
from schemas import DecodeError, decode

log = logging.getLogger(__name__)

R = TypeVar("R", bound=msgspec.Struct)


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


@runtime_checkable
class Stateful(Protocol):
    """A handler that holds state between batches (a cache of what it committed)."""

    def forget(self) -> None:
        """Drop the state; the next batch reads what it needs from the database again."""


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


@dataclass(frozen=True)
class Stopped:
    """A partition the loop cannot move on, because of a system fault."""

    since: datetime
    reason: str
    """``Type: message`` of the latest failure."""
    kind: str
    """The latest failure's type: a new kind of failure is logged, the same one again not."""


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumeLoop[R], stop: asyncio.Event) -> None:
        self._loop = loop
        self._stop = stop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Nothing to flush: every batch commits its offsets before the next getmany().
        # Another member may write these partitions' rows from now on: forget them.
        self._loop.forget()
        for tp in revoked:
            self._loop.stopped.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Until the seek succeeds the positions are Kafka's (the earliest, since offsets are
        # never committed there): correct, the stored offsets fence every batch, but a
        # whole topic read for nothing. So wait for Postgres here.
        self._loop.forget()
        await self._loop.rewind(self._stop, assigned)


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
        backoff: Backoff | None = None,
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
        self.backoff = backoff or Backoff()
        self.batches = 0
        """Batches committed so far (for tests and progress logs)."""
        self.stopped: dict[int, Stopped] = {}
        """The partitions stopped by a system fault, until a batch of theirs commits."""
        self._failing: str | None = None

    def forget(self) -> None:
        """Have a stateful handler drop its state (see :class:`Stateful`)."""
        if isinstance(self.handler, Stateful):
            self.handler.forget()

    def subscribe(self, stop: asyncio.Event) -> None:
        self.consumer.subscribe([self.topic], listener=_SeekToStoredOffsets(self, stop))

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        stored = await load_offsets(self.pool, self.group, self.topic)
        for tp in partitions:
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first."""
        self.subscribe(stop)
        while not stop.is_set():
            partitions: set[TopicPartition] = set()
            try:
                batch = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
                partitions = set(batch)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    await self.process(records)
                self._resumed({tp.partition for tp in partitions})
            except Exception as exc:
                self.forget()
                self._stop(sorted(tp.partition for tp in partitions), exc)
                if await pause(stop, self.backoff.next_delay()):
                    return
                await self.rewind(stop, partitions)

    async def rewind(self, stop: asyncio.Event, partitions: set[TopicPartition]) -> None:
        """Seek ``partitions`` (those still assigned) to the stored offsets, trying until it
        succeeds or ``stop`` is set.

        After a failed batch getmany() has moved the positions past it: fetching on before
        the rewind succeeds would apply later records and store offsets past the failed
        ones, which would then never be applied (positions are never committed).
        """
        failures = 0
        while not stop.is_set():
            try:
                await self.seek_to_stored(partitions & self.consumer.assignment())
                return
            except Exception as exc:
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "cannot read the stored offsets (%s); trying again",
                    describe(exc),
                )
                await pause(stop, self.backoff.next_delay())

    def _stop(self, partitions: list[int], exc: Exception) -> None:
        """Mark ``partitions`` stopped; log when that is news, not at every retry."""
        reason, kind = describe(exc), type(exc).__name__
        now = datetime.now(UTC)
        news = [p for p in partitions if p not in self.stopped or self.stopped[p].kind != kind]
        for p in partitions:
            since = self.stopped[p].since if p in self.stopped else now
            self.stopped[p] = Stopped(since, reason, kind)
        if news or (not partitions and kind != self._failing):
            log.error(
                "system fault on %s%s (%s): nothing dead-lettered, retrying from the stored "
                "offsets with backoff until it is repaired",
                self.topic,
                partitions or "",
                reason,
                exc_info=None if _expected(exc) else exc,  # a bug: its traceback says where
                extra={"topic": self.topic, "partitions": partitions},
            )
        else:
            log.debug("still failing on %s%s (%s)", self.topic, partitions, reason)
        self._failing = kind

    def _resumed(self, partitions: set[int]) -> None:
        self._failing = None
        back = {p: self.stopped.pop(p) for p in partitions if p in self.stopped}
        if not self.stopped:  # else a partition still fails: keep backing off for it
            self.backoff.reset()
        if back:
            since = min(s.since for s in back.values())
            log.warning(
                "%s%s moving again after %.1f s stopped",
                self.topic,
                sorted(back),
                (datetime.now(UTC) - since).total_seconds(),
            )

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle one batch: effects, dead letters and offsets commit together.

        Raises on a system fault, with nothing committed.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            partitions = sorted({r.partition for r in records})
            stored = await _lock_offsets(conn, self.group, self.topic, partitions)
            fresh = [r for r in records if r.offset >= stored[r.partition]]
            raw = {(r.partition, r.offset): r for r in fresh}
            decoded, undecodable = self._decode(fresh)
            try:
                async with conn.transaction():  # savepoint: undone alone if the handler fails
                    rejected = await self.handler(conn, decoded)
            except Exception as exc:
                if classify(exc) is Fault.SYSTEM:
                    raise
                log.warning(
                    "batch failed on a record fault (%s); finding the records at fault among "
                    "its %d by halves",
                    describe(exc),
                    len(decoded),
                )
                rejected = await self._by_halves(conn, decoded)
            dead = [self._dead_letter(raw, r) for r in [*undecodable, *rejected]]
            if dead:
                await publish_all(self.producer, self.deadletter_topic, dead)
                log.warning("sent %d record(s) to %s", len(dead), self.deadletter_topic)
                for r in rejected:
                    log.info(
                        "dead-lettered %s[%d]@%d: %s",
                        self.topic,
                        r.partition,
                        r.offset,
                        r.reason,
                        extra={"topic": self.topic, "partition": r.partition, "offset": r.offset},
                    )
            next_offsets: dict[int, int] = {}
            for r in records:
                next_offsets[r.partition] = max(next_offsets.get(r.partition, 0), r.offset + 1)
            await _store_offsets(conn, self.group, self.topic, next_offsets)
        self.batches += 1

    async def _by_halves(self, conn: Connection, decoded: Sequence[Consumed[R]]) -> list[Rejected]:
        """Handle ``decoded``, which failed on a record fault, as two halves in order, each
        under a savepoint; a half that fails again is halved in turn, and a single record
        that fails is rejected. A system fault anywhere raises: the whole batch is undone
        and retried, never dead-lettered for it."""
        middle = len(decoded) // 2
        rejected: list[Rejected] = []
        for half in (decoded[:middle], decoded[middle:]):
            if not half:
                continue
            try:
                async with conn.transaction():
                    rejected.extend(await self.handler(conn, half))
            except Exception as exc:
                if classify(exc) is Fault.SYSTEM:
                    raise
                if len(half) > 1:
                    rejected.extend(await self._by_halves(conn, half))
                else:
                    reason = f"handler failed: {describe(exc)}"
                    rejected.append(Rejected(half[0].partition, half[0].offset, reason))
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
                    "undecodable record at %s[%d]@%d: %s",
                    self.topic,
                    r.partition,
                    r.offset,
                    exc,
                    extra={"topic": self.topic, "partition": r.partition, "offset": r.offset},
                )
                undecodable.append(Rejected(r.partition, r.offset, f"cannot decode: {exc}"))
                continue
            decoded.append(Consumed(record, r.partition, r.offset, r.key, r.timestamp))
        return decoded, undecodable

    def _dead_letter(
        self, raw_records: dict[tuple[int, int], ConsumerRecord[bytes, bytes]], rejected: Rejected
    ) -> tuple[bytes | None, bytes]:
        raw = raw_records[(rejected.partition, rejected.offset)]
        return dead_letter(
            consumer_group=self.group,
            topic=self.topic,
            partition=rejected.partition,
            offset=rejected.offset,
            key=raw.key,
            value=raw.value,
            reason=rejected.reason,
            failed_at=datetime.now(UTC),
        )


def _expected(exc: BaseException) -> bool:
    """A failure of a dependency, whose traceback would say nothing more than its message."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | RetryBatch
        | KafkaError
        | asyncpg.PostgresError
        | asyncpg.InterfaceError,
    )


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
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # what start() opened before failing
        raise
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
