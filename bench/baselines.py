"""Row 6: what the same broker and database do with the same data through their own tools.

- Kafka's producer benchmark (``org.apache.kafka.tools.ProducerPerformance``, from the
  ``kafka-tools`` jar scripts/kafka.sh fetched) sends as many records as the import has
  events, its payloads being those very events as the gateway encodes them, keyed over
  20,000 keys, with the options of the project's producer (acks=all, idempotent, 512 KB
  batches, 5 ms linger, no compression).
- PostgreSQL ``COPY`` loads the rows the scorer writes to ``events`` for the scorer's
  benchmark events into a table like ``events`` without its indexes: the least work that
  puts those rows in the database; and, to tell what the indexes add, into one with them.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.deadlines import deadline_for
from bench.processes import local_dir, stop
from bench.scorer_alone import iter_events
from bench.world import World
from ingest_gateway.csv_rows import ImportRows, RowError
from schemas import LeadEvent, encode

PRODUCER_CLASS = "org.apache.kafka.tools.ProducerPerformance"
PRODUCER_OPTIONS = {
    "acks": "all",
    "enable.idempotence": "true",
    "batch.size": str(512 * 1024),
    "linger.ms": "5",
    "compression.type": "none",
}
"""leadvibe.producing's options, in the Java client's words."""
KEYS = 20_000
"""Distinct keys of the producer benchmark: the generated file's leads."""
_SUMMARY = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency"
)


def kafka_tools() -> str | None:
    """The class path of Kafka's jars, or None when java or the kafka-tools jar is missing."""
    libs = local_dir() / "kafka" / "libs"
    if shutil.which("java") is None or not any(libs.glob("kafka-tools-*.jar")):
        return None
    return str(libs / "*")


def import_payloads(data: bytes) -> list[bytes]:
    """The events of an import file, encoded as the gateway publishes them."""
    rows = ImportRows(
        unit_id="ou_bench",
        import_id="imp_bench",
        skip_triggers=False,
        received_at=datetime.now(UTC),
        event_id=lambda row: f"ev_bench_{row:09d}",
    )
    items = [*rows.feed(data), *rows.close()]
    return [encode(item) for item in items if not isinstance(item, RowError)]


@dataclass(frozen=True)
class ProducerRun:
    records: int
    records_per_second: float
    megabytes_per_second: float
    average_latency_ms: float


async def measure_producer(
    world: World, classpath: str, payloads: list[bytes], runs: int, logs: Path
) -> list[ProducerRun]:
    """``runs`` runs of ProducerPerformance, each sending ``len(payloads)`` records."""
    topic = (await world.topics("producer")).events
    payload_file = logs / "producer-payloads.txt"
    payload_file.parent.mkdir(parents=True, exist_ok=True)
    payload_file.write_bytes(b"\n".join(payloads))
    count = len(payloads)
    command = [
        "java",
        "-Xmx512m",
        "-cp",
        classpath,
        PRODUCER_CLASS,
        "--bootstrap-server",
        world.base.kafka_bootstrap_servers,
        "--topic",
        topic,
        "--num-records",
        str(count),
        "--payload-file",
        str(payload_file),
        "--throughput",
        "-1",
        "--key-distribution",
        "random",
        "--record-key-range",
        str(KEYS),
        "--reporting-interval",
        "3600000",
        "--command-property",
        *(f"{name}={value}" for name, value in PRODUCER_OPTIONS.items()),
    ]
    results = []
    try:
        for _ in range(runs):
            output = await _run(command, timeout=deadline_for(count))
            results.append(_summary(output))
    finally:
        payload_file.unlink(missing_ok=True)
    return results


async def _run(command: list[str], *, timeout: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    finally:
        await stop(process)
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{command[4]} exited with {process.returncode}:\n{text[-2000:]}")
    return text


def _summary(output: str) -> ProducerRun:
    """The last summary line: ``N records sent, R records/sec (M MB/sec), L ms avg latency``."""
    found = _SUMMARY.findall(output)
    if not found:
        raise RuntimeError(f"no summary in ProducerPerformance's output:\n{output[-2000:]}")
    records, rate, megabytes, latency = found[-1]
    return ProducerRun(int(records), float(rate), float(megabytes), float(latency))


@dataclass(frozen=True)
class CopyRun:
    rows: int
    seconds: float
    """Into a table like ``events`` without its indexes: the baseline."""
    indexed_seconds: float
    """Into a table like ``events`` with its key and indexes: what of the scorer's cost is
    the events rows' own."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def indexed_rows_per_second(self) -> float:
        return self.rows / self.indexed_seconds


EVENT_COLUMNS = (
    "unit_id", "event_id", "lead_id", "event_type", "occurred_at", "source", "skip_triggers",
    "import_id", "import_row", "points", "score_after", "metadata",
)  # fmt: skip
"""The columns the scorer writes to ``events`` (scorer.store.EVENT_COLUMNS)."""
POINTS = {"page_view": 1, "email_open": 2, "email_click": 5, "form_submit": 20,
          "webinar_attend": 40}  # fmt: skip


def event_rows(events: Iterable[LeadEvent]) -> Iterable[tuple[object, ...]]:
    """The ``events`` row of each event, as the scorer would write it: a lead id (one
    minted from the event for an event known by its aliases only), points and the lead's
    running score."""
    scores: dict[str, int] = {}
    for e in events:
        lead_id = e.lead_id or f"ld_{e.event_id[:26]}"
        points = POINTS.get(e.event_type, 0)
        score = scores[lead_id] = scores.get(lead_id, 0) + points
        yield (
            e.unit_id, e.event_id, lead_id, e.event_type, e.timestamp.isoformat(), e.source,
            e.skip_triggers, e.import_id, e.row, points, score, "{}",
        )  # fmt: skip


def write_event_rows(path: Path, count: int, people: int) -> None:
    """The ``events`` rows of the scorer benchmark's ``count`` events, as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        csv.writer(out).writerows(event_rows(iter_events(count, people)))


async def measure_copy(
    world: World, count: int, people: int, runs: int, workdir: Path
) -> list[CopyRun]:
    """``runs`` COPYs of the ``count`` rows into a fresh table like ``events``, unindexed,
    and as many into one with the key and indexes of ``events``."""
    rows_file = workdir / "copy-rows.csv"
    await asyncio.to_thread(write_event_rows, rows_file, count, people)
    url = await world.database("copy")
    conn = await asyncpg.connect(url)
    results = []
    try:
        for n in range(runs):
            # LIKE copies the columns, their types and NOT NULLs, and no index or key...
            plain = await _copy(conn, f"events_copy_{n}", "INCLUDING DEFAULTS", rows_file, count)
            # ...unless told to.
            indexed = await _copy(conn, f"events_indexed_{n}", "INCLUDING ALL", rows_file, count)
            results.append(CopyRun(count, plain, indexed))
    finally:
        await conn.close()
        os.unlink(rows_file)
    await world.drop(url)
    return results


async def _copy(
    conn: asyncpg.Connection, table: str, like: str, rows_file: Path, count: int
) -> float:
    """Seconds to COPY the rows into a new table LIKE events ``like``; dropped after."""
    await conn.execute(f"CREATE TABLE {table} (LIKE events {like})")
    started = time.perf_counter()
    await asyncio.wait_for(
        conn.copy_to_table(table, source=rows_file, columns=EVENT_COLUMNS, format="csv"),
        timeout=deadline_for(count),
    )
    seconds = time.perf_counter() - started
    await conn.execute(f"DROP TABLE {table}")
    return seconds
