"""Reading a topic between offsets, outside any consumer group: what a replay reads with.

A replay reads each partition from a start offset up to an end offset captured at one
moment (records appended since are left for a later pass), so it knows its total before
it starts and stops exactly where it meant to, however fast producers append. Nothing is
committed to Kafka: the reader is not a member of a group, and positions are its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from leadvibe.consuming import open_consumer

Offsets = dict[int, int]
"""Offset by partition."""

STALL_SECONDS = 60.0
"""A read that gets no record for this long while short of its end offsets fails."""


class ReadStalled(RuntimeError):
    """The broker stopped answering with records before the end offsets were reached."""


@asynccontextmanager
async def open_reader(bootstrap_servers: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group, fetching in large requests."""
    async with open_consumer(bootstrap_servers, None, partition_fetch_mb=8) as consumer:
        yield consumer


async def end_offsets(consumer: AIOKafkaConsumer, topic: str) -> Offsets:
    """The next offset to be written in each partition of ``topic``, now."""
    # A consumer knows the partitions of the topics it tracks only: track this one first.
    await consumer._client.add_topic(topic)
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic!r} does not exist")
    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
    return {tp.partition: offset for tp, offset in ends.items()}


def remaining(start: Mapping[int, int], end: Mapping[int, int]) -> int:
    """Records (offsets) between ``start`` (0 where absent) and ``end``."""
    return sum(max(0, stop - start.get(p, 0)) for p, stop in end.items())


async def read_between(
    consumer: AIOKafkaConsumer,
    topic: str,
    start: Mapping[int, int],
    end: Mapping[int, int],
    *,
    max_records: int = 50_000,
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Batches of the records of ``topic`` with ``start[p] <= offset < end[p]`` (start 0
    where absent), each partition in offset order, partitions interleaved."""
    pending = {p: stop for p, stop in end.items() if start.get(p, 0) < stop}
    if not pending:
        return
    partitions = {p: TopicPartition(topic, p) for p in pending}
    consumer.assign(list(partitions.values()))
    for p, tp in partitions.items():
        consumer.seek(tp, start.get(p, 0))
    last_record = time.monotonic()
    while pending:
        fetched = await consumer.getmany(
            *(partitions[p] for p in pending), timeout_ms=1000, max_records=max_records
        )
        batch: list[ConsumerRecord[bytes, bytes]] = []
        for tp, records in fetched.items():
            stop = pending.get(tp.partition)
            if stop is not None:
                batch.extend(records if records[-1].offset < stop else _below(records, stop))
        for p in list(pending):
            # The position, not the last record: transaction markers take offsets too.
            if await consumer.position(partitions[p]) >= pending[p]:
                del pending[p]
                consumer.pause(partitions[p])
        if batch:
            last_record = time.monotonic()
            yield batch
        elif time.monotonic() - last_record > STALL_SECONDS:
            raise ReadStalled(
                f"no record from {topic} for {STALL_SECONDS:.0f} s with "
                f"{len(pending)} partition(s) short of their end offset"
            )
    consumer.assign([])


def _below(
    records: list[ConsumerRecord[bytes, bytes]], stop: int
) -> list[ConsumerRecord[bytes, bytes]]:
    return [r for r in records if r.offset < stop]
