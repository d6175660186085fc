"""The record batches an import's worker thread fills (publishing.RecordBatches), and the
bounds of publishing that crash recovery relies on."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ingest_gateway import publishing, recovery
from ingest_gateway.publishing import ReadyBatch, RecordBatches


async def test_records_fill_one_batch_per_partition_and_the_rest_come_at_the_end() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=16 * 1024)
    batches = RecordBatches(producer, [0, 1, 2])
    filled: list[ReadyBatch] = []
    for n in range(200):
        batches.add(n % 2, b"k%d" % n, b"v" * 500, filled)
    assert filled  # 100 records of 500 bytes do not fit in a 16 KB batch
    assert {partition for partition, _ in filled} == {0, 1}
    rest = batches.rest()
    assert sorted(partition for partition, _ in rest) == [0, 1]
    assert batches.rest() == []
    counts = [batch.record_count() for _, batch in filled + rest]
    assert sum(counts) == 200


async def test_a_keys_partition_is_the_default_partitioners() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    partitions = list(range(6))
    batches = RecordBatches(producer, partitions)
    default = DefaultPartitioner()
    for key in (b"ou_1:ld_1", b"ou_1:email=a@example.com", b"", b"x" * 37):
        assert batches.partition(key) == default(key, partitions, partitions)


def test_an_import_still_publishing_past_the_stale_bound_has_no_live_publisher() -> None:
    assert recovery.STALE_AFTER > publishing.CONNECT_TIMEOUT + publishing.STREAM_TIMEOUT
