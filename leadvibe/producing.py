"""Publishing to Kafka: one idempotent, acks=all producer per process, batched sends."""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

PRODUCER_OPTIONS: Final[dict[str, Any]] = {
    "acks": "all",  # every in-sync replica has the record before it counts as sent
    "enable_idempotence": True,  # a retried send is never written twice
    "max_batch_size": 512 * 1024,
    "compression_type": None,
}
"""The options of every producer of the project."""


@asynccontextmanager
async def open_producer(
    bootstrap_servers: str, *, linger_ms: int = 5, **options: object
) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer that waits for every in-sync replica and never duplicates on retry.

    ``linger_ms`` is how long a record waits for others to share its request: a few
    milliseconds help many concurrent senders; a caller that awaits every publish at once
    (a consume loop publishing inside its transaction) loses them on each publish.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, linger_ms=linger_ms, **PRODUCER_OPTIONS, **options
    )
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # what start() opened before failing
        raise
    try:
        yield producer
    finally:
        await producer.stop()


async def publish_all(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Send every (key, value) without awaiting each, then wait until Kafka acknowledged all.

    Raises the first send error (KafkaError) if any record was not acknowledged.
    """
    pending = [await producer.send(topic, value, key=key) for key, value in records]
    if pending:
        await asyncio.gather(*pending)
    return len(pending)


# The partition of recently seen keys: aiokafka's murmur2 is pure Python, and costs more
# than everything else a record needs; keys (a lead) recur from batch to batch.
_partition_cache: dict[tuple[str, int], dict[bytes, int]] = {}
_PARTITION_CACHE_SIZE = 500_000
_WORDS = struct.Struct("<I")
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash, as aiokafka's DefaultPartitioner computes it, twice as fast.

    A key's partition is ``(murmur2(key) & 0x7FFFFFFF) % partitions``, as in the Java client.
    """
    length = len(data)
    whole = length & ~3
    h = 0x9747B28C ^ length
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


async def _partitioner(producer: AIOKafkaProducer, topic: str) -> Callable[[bytes | None], int]:
    """Key → partition of ``topic``, as the producer's own partitioner chooses (cached)."""
    partitions = sorted(await producer.partitions_for(topic))
    random_partition = DefaultPartitioner()
    known = _partition_cache.setdefault((topic, len(partitions)), {})
    if len(known) > _PARTITION_CACHE_SIZE:
        known.clear()

    def partition_of(key: bytes | None) -> int:
        if key is None:
            chosen: int = random_partition(key, partitions, partitions)
            return chosen
        if (partition := known.get(key)) is None:
            partition = known[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        return partition

    return partition_of


async def publish_batched(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """What :func:`publish_all` does, several times faster for thousands of records.

    Records go into one record batch per partition (chosen by key as the producer's own
    partitioner does), so the per-record Python work is one append; the call returns once
    Kafka acknowledged every batch and raises the first send error otherwise.
    """
    partition_of = await _partitioner(producer, topic)
    batches: dict[int, Any] = {}
    pending = []
    count = 0
    for key, value in records:
        partition = partition_of(key)
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise MessageSizeTooLargeError(f"a record of {len(value)} bytes for {topic}")
        count += 1
    for partition, batch in batches.items():
        pending.append(await producer.send_batch(batch, topic, partition=partition))
    if pending:
        await asyncio.gather(*pending)
    return count


class _Lane:
    """One partition's records waiting for Kafka: the batch that fills while the previous one
    is in flight, and the full ones queued behind it."""

    __slots__ = ("flushing", "full", "open", "opened")

    def __init__(self) -> None:
        self.open: Any = None
        """The batch records are appended to now (None until the first)."""
        self.opened: asyncio.Future[None] | None = None
        """Resolved once Kafka acknowledged ``open`` (failed with the error if not)."""
        self.full: deque[tuple[Any, asyncio.Future[None]]] = deque()
        self.flushing = False


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a batch's outcome seen: all of its callers may have stopped waiting."""
    if not future.cancelled():
        future.exception()


class SharedBatches:
    """One record batch per partition shared by every concurrent caller: records of many
    requests travel to Kafka together, and each caller still waits for its own.

    A partition has at most one batch in flight (the idempotent producer's own rule); the
    records that arrive meanwhile fill the next one, which leaves as soon as Kafka answers
    the previous one. So a lone record leaves at once (no linger), and under load batches
    grow with the load instead of queueing one small batch per request, which is what
    :func:`publish_batched` does when many callers use it at once.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._lanes: dict[int, _Lane] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    async def publish(self, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Add the records to the shared batches and return once Kafka acknowledged all of
        them; raises the first send error (KafkaError) of their batches otherwise.

        A caller that stops waiting (cancelled, timed out) does not affect the others.
        """
        partition_of = await _partitioner(self.producer, self.topic)
        waits: set[asyncio.Future[None]] = set()
        count = 0
        for key, value in records:
            partition = partition_of(key)
            lane = self._lanes.get(partition)
            if lane is None:
                lane = self._lanes[partition] = _Lane()
            waits.add(self._append(lane, key, value))
            if not lane.flushing:
                lane.flushing = True
                asyncio.get_running_loop().call_soon(self._start_flush, partition, lane)
            count += 1
        if waits:
            await asyncio.wait(waits)  # unlike gather, never cancels a shared future
            for future in waits:
                if (error := future.exception()) is not None:
                    raise error
        return count

    def _append(self, lane: _Lane, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        if lane.open is None or lane.opened is None:
            lane.open = self.producer.create_batch()
            lane.opened = asyncio.get_running_loop().create_future()
            lane.opened.add_done_callback(_retrieve)
        if lane.open.append(key=key, value=value, timestamp=None) is not None:
            return lane.opened
        if lane.open.record_count() == 0:
            raise MessageSizeTooLargeError(f"a record of {len(value)} bytes for {self.topic}")
        lane.full.append((lane.open, lane.opened))
        lane.open = lane.opened = None
        return self._append(lane, key, value)

    def _start_flush(self, partition: int, lane: _Lane) -> None:
        # Called soon rather than at once: the records of the request being read now (and
        # of any other ready one) go into the same batch.
        task = asyncio.get_running_loop().create_task(self._flush(partition, lane))
        self._flushes.add(task)  # a task nothing references may be collected mid-flight
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, partition: int, lane: _Lane) -> None:
        try:
            while True:
                if lane.full:
                    batch, done = lane.full.popleft()
                elif lane.open is not None and lane.opened is not None:
                    batch, done = lane.open, lane.opened
                    lane.open = lane.opened = None
                else:
                    return
                batch.close()  # a closed batch leaves without the producer's linger
                try:
                    sent = await self.producer.send_batch(batch, self.topic, partition=partition)
                    await sent
                except asyncio.CancelledError:
                    done.cancel()
                    raise
                except Exception as exc:
                    done.set_exception(exc)
                else:
                    done.set_result(None)
        except asyncio.CancelledError:  # the process stops: nothing more will leave
            for _, done in lane.full:
                done.cancel()
            if lane.opened is not None:
                lane.opened.cancel()
            lane.full.clear()
            lane.open = lane.opened = None
            raise
        finally:
            lane.flushing = False
