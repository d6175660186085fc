"""``make bench``: every row of the issue measured in one run, against one broker and one
database server, into one table (and the same as JSON).

Each measurement is a step; a step that fails leaves the error in its rows and the
others still run, so a hiccup of the shared machine costs one row, not the whole run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from bench import baselines, imports, ingest_load, replay, scorer_alone, triggers_alone
from bench.imports import FILE_SIZE, ImportFile
from bench.processes import SCORERS, load_average
from bench.report import Figure, Table, Target
from bench.scorer_alone import ScorerRun
from bench.seed import make_triggers
from bench.webhooks import Receiver, webhook_receiver
from bench.world import World, open_world
from leadvibe.settings import Settings

T = TypeVar("T")

EVENTS = 1_000_000
"""The issue's volume for the scorer, the trigger service and the replay."""
ROWS = frozenset("12345678")
"""The issue's rows 1 to 6, 7 (live ingest) and 8 (the scorer alone over Zipf-like leads)."""
EVENTS_PER_PERSON = 10
"""As in the 10 MB file (about 8 events per lead) and the scorer's own benchmark."""


@dataclass(frozen=True)
class Config:
    file_size: int = FILE_SIZE
    events: int = EVENTS
    import_runs: int = 5
    """Runs of rows 1 and 2 and of Kafka's producer benchmark (the issue: medians of 5)."""
    runs: int = 3
    """Runs of each measurement over ``events`` (scorer, trigger service, replay, COPY)."""
    rows: frozenset[str] = ROWS
    """The issue's rows to measure (the ratios of row 6 need rows 1 and 3 too)."""
    live_seconds: float = ingest_load.SECONDS
    """Seconds of each load of row 7 (live ingest)."""

    @property
    def people(self) -> int:
        """People in the scorer's events, leads in the trigger service's records."""
        return max(1, self.events // EVENTS_PER_PERSON)

    @property
    def full(self) -> bool:
        """The issue's volumes, to which its targets apply."""
        return (
            self.file_size == FILE_SIZE
            and self.events == EVENTS
            and self.live_seconds == ingest_load.SECONDS
        )


@dataclass
class Results:
    config: Config
    run_id: str = ""
    table: Table = field(default_factory=Table)
    details: dict[str, Any] = field(default_factory=dict)
    """Every run of every step, for the JSON file."""
    failures: dict[str, str] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)
    """The machine's 1-minute load average at the end of each step."""


def say(message: str) -> None:
    """Progress, on stderr: the table alone goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_figure(row: str, unit: str, runs: list[dict[str, float]]) -> Figure:
    """CPU per ``unit`` of one row: the median of each run's total, with the median of each
    component in the label (``gateway 12 + postgres 3 + kafka 2``), so that a change shows
    where it moved the cost."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    parts = " + ".join(f"{name} {_median([r.get(name, 0.0) for r in runs]):.1f}" for name in names)
    totals = [sum(run.values()) for run in runs]
    return Figure(row, f"  CPU µs per {unit}: {parts}", f"µs/{unit}", totals)


def _plain(value: Any) -> Any:
    """Dataclasses (and lists of them) as JSON-ready dicts."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Harness:
    def __init__(
        self, world: World, config: Config, logs: Path, workdir: Path, receiver: Receiver
    ) -> None:
        self.world = world
        self.config = config
        self.logs = logs
        self.workdir = workdir
        self.receiver = receiver
        self.results = Results(config, world.run_id)
        self.table = self.results.table

    def target(self, op: Literal["<=", ">="], value: float) -> Target | None:
        """The issue's target, when this run measures at the issue's volumes."""
        return Target(op, value) if self.config.full else None

    async def step(self, name: str, run: Callable[[], Awaitable[T]]) -> T | None:
        """Run one measurement; None (and the error kept) if it failed."""
        say(f"== {name}")
        started = time.perf_counter()
        try:
            result = await run()
        except Exception as exc:
            self.results.failures[name] = f"{type(exc).__name__}: {exc}"
            say(f"   failed: {self.results.failures[name]}")
            return None
        finally:
            self.results.load[name] = load_average()
        say(f"   {time.perf_counter() - started:.0f} s (load average {load_average():.1f})")
        self.results.details[name] = _plain(result)
        return result

    def failed(self, row: str, label: str, name: str) -> None:
        first_line = self.results.failures[name].splitlines()[0][:120]
        self.table.add(Figure(row, label, "", note=f"failed: {first_line}"))

    async def run(self) -> Results:
        rows = self.config.rows
        file = ImportFile.of_size(self.config.file_size)
        say(f"import file: {len(file.data) / 2**20:.1f} MB, {file.rows:,} rows (bench.generate)")
        import_rate = await self.imports(file) if "1" in rows else None
        if "2" in rows:
            await self.end_to_end(file)
        if "6" in rows:
            await self.producer_baseline(file, import_rate)
        scorer_rate = await self.scorer_alone() if "3" in rows else None
        if "6" in rows:
            await self.copy_baseline(scorer_rate)
        if "4" in rows:
            await self.triggers_alone()
        if "5" in rows:
            await self.replay()
        if "7" in rows:
            await self.live_ingest()
        if "8" in rows:
            await self.scorer_zipf()
        return self.results

    async def imports(self, file: ImportFile) -> float | None:
        """Row 1; the median rows per second."""
        label = f"import: {len(file.data) / 2**20:.0f} MB CSV, {file.rows:,} rows: upload → 202"
        runs = await self.step(
            "import",
            lambda: imports.measure_imports(self.world, file, self.config.import_runs, self.logs),
        )
        if runs is None:
            self.failed("1", label, "import")
            return None
        rates = [r.rows_per_second for r in runs]
        self.table.add(Figure("1", label, "s", [r.seconds for r in runs], self.target("<=", 1.5)))
        self.table.add(Figure("1", "  rows per second", "rows/s", rates))
        self.table.add(
            Figure(
                "1",
                "  gateway peak RSS (VmHWM)",
                "MB",
                [r.peak_rss_mb for r in runs],
                self.target("<=", 150),
                statistic="max",
            )
        )
        self.table.add(cpu_figure("1", "row", [r.cpu_us for r in runs]))
        return _median(rates)

    async def end_to_end(self, file: ImportFile) -> None:
        label = "end to end: 202 → GET /imports/{id} all applied"
        runs = await self.step(
            "end to end",
            lambda: imports.measure_end_to_end(
                self.world, file, self.config.import_runs, self.logs, self.receiver
            ),
        )
        if runs is None:
            self.failed("2", label, "end to end")
            return
        self.table.add(Figure("2", label, "s", [r.scored for r in runs], self.target("<=", 3)))
        self.table.add(
            Figure(
                "2",
                "  202 → trigger service at the scored topic's end",
                "s",
                [r.evaluated for r in runs],
                self.target("<=", 4),
            )
        )
        self.table.add(
            Figure(
                "2", "  upload → 202, scorer and triggers running", "s", [r.upload for r in runs]
            )
        )
        self.table.add(cpu_figure("2", "event", [r.cpu_us for r in runs]))

    async def producer_baseline(self, file: ImportFile, import_rate: float | None) -> None:
        classpath = baselines.kafka_tools()
        payloads = baselines.import_payloads(file.data)
        size = sum(map(len, payloads)) / len(payloads)
        label = f"Kafka ProducerPerformance: {len(payloads):,} records of {size:.0f} B"
        if classpath is None:
            self.table.add(Figure("6", label, "", note="not available: no java or kafka-tools jar"))
            return
        runs = await self.step(
            "Kafka producer",
            lambda: baselines.measure_producer(
                self.world, classpath, payloads, self.config.import_runs, self.logs
            ),
        )
        if runs is None:
            self.failed("6", label, "Kafka producer")
            return
        rate = _median([r.records_per_second for r in runs])
        self.table.add(Figure("6", label, "records/s", [r.records_per_second for r in runs]))
        if import_rate is not None:
            self.table.add(
                Figure(
                    "6", "  gateway rows/s ÷ Kafka producer records/s", "x", [import_rate / rate]
                )
            )

    async def scorer_alone(self) -> float | None:
        """Row 3; the median events per second."""
        c = self.config
        label = f"scorer alone: {c.events:,} events in the topic, {SCORERS} processes"
        runs = await self._scorer_runs("scorer alone", "scorer", None)
        if runs is None:
            self.failed("3", label, "scorer alone")
            return None
        rates = [r.rate for r in runs]
        self.table.add(Figure("3", label, "events/s", rates, self.target(">=", 50_000)))
        self.table.add(cpu_figure("3", "event", [r.cpu_us for r in runs]))
        return _median(rates)

    async def scorer_zipf(self) -> None:
        """Row 8: row 3's volume and people, each event's person drawn Zipf-like."""
        c = self.config
        exponent = scorer_alone.ZIPF_EXPONENT
        label = f"scorer alone, Zipf-like leads (s={exponent:g}): {c.events:,} events"
        name = "scorer alone, Zipf"
        runs = await self._scorer_runs(name, "zipf", exponent)
        if runs is None:
            self.failed("8", label, name)
            return
        rates = [r.rate for r in runs]
        self.table.add(Figure("8", label, "events/s", rates))
        self.table.add(Figure("8", "  leads in the projections", "leads", [r.leads for r in runs]))
        self.table.add(cpu_figure("8", "event", [r.cpu_us for r in runs]))

    async def _scorer_runs(
        self, name: str, purpose: str, zipf: float | None
    ) -> list[ScorerRun] | None:
        c = self.config

        async def run() -> list[scorer_alone.ScorerRun]:
            topics = await self.world.topics(purpose)
            started = time.perf_counter()
            await scorer_alone.publish_events(
                self.world.base.kafka_bootstrap_servers, topics, c.events, c.people, zipf=zipf
            )
            say(f"   published {c.events:,} events in {time.perf_counter() - started:.0f} s")
            runs = []
            for number in range(1, c.runs + 1):
                runs.append(
                    await scorer_alone.measure(
                        self.world,
                        topics,
                        c.events,
                        number=number,
                        logs=self.logs if zipf is None else self.logs / purpose,
                        processes=SCORERS,
                    )
                )
                say(f"   run {number}: {runs[-1].rate:,.0f} events/s")
            return runs

        return await self.step(name, run)

    async def copy_baseline(self, scorer_rate: float | None) -> None:
        c = self.config
        label = f"PostgreSQL COPY: the scorer's {c.events:,} events rows, unindexed"
        runs = await self.step(
            "COPY",
            lambda: baselines.measure_copy(self.world, c.events, c.people, c.runs, self.workdir),
        )
        if runs is None:
            self.failed("6", label, "COPY")
            return
        rate = _median([r.rows_per_second for r in runs])
        self.table.add(Figure("6", label, "rows/s", [r.rows_per_second for r in runs]))
        self.table.add(
            Figure(
                "6",
                "  the same into a table with events' key and indexes",
                "rows/s",
                [r.indexed_rows_per_second for r in runs],
            )
        )
        if scorer_rate is not None:
            self.table.add(
                Figure("6", "  scorer events/s ÷ COPY rows/s", "x", [scorer_rate / rate])
            )

    async def triggers_alone(self) -> None:
        c = self.config
        label = f"trigger service alone: {c.events:,} scored records, 20 triggers"
        triggers = make_triggers(50, 50)

        async def run() -> list[triggers_alone.TriggerRun]:
            topics = await self.world.topics("triggers")
            started = time.perf_counter()
            await triggers_alone.publish_records(
                self.world.base.kafka_bootstrap_servers, topics, c.events, c.people
            )
            say(
                f"   published {c.events:,} scored records in {time.perf_counter() - started:.0f} s"
            )
            runs = []
            for number in range(1, c.runs + 1):
                runs.append(
                    await triggers_alone.measure(
                        self.world,
                        topics,
                        c.events,
                        number=number,
                        webhook_url=self.receiver.url,
                        triggers=triggers,
                        logs=self.logs,
                    )
                )
                say(f"   run {number}: {runs[-1].rate:,.0f} records/s, {runs[-1].fired:,} firings")
            return runs

        runs = await self.step("trigger service alone", run)
        if runs is None:
            self.failed("4", label, "trigger service alone")
            return
        rates = [r.rate for r in runs]
        self.table.add(Figure("4", label, "records/s", rates, self.target(">=", 100_000)))
        self.table.add(cpu_figure("4", "record", [r.cpu_us for r in runs]))

    async def replay(self) -> None:
        c = self.config
        label = f"replay: full rebuild of {c.events:,} events"
        runs = await self.step(
            "replay",
            lambda: replay.measure_replay(self.world, c.events, c.people, c.runs, self.logs),
        )
        if runs is None:
            self.failed("5", label, "replay")
            return
        rates = [r.events_per_second for r in runs]
        self.table.add(Figure("5", label, "events/s", rates, self.target(">=", 50_000)))
        self.table.add(cpu_figure("5", "event", [r.cpu_us for r in runs]))

    async def live_ingest(self) -> None:
        """Row 7 (issue 14): POST /ingest under load, beside GET /leads?limit=1."""
        seconds = self.config.live_seconds
        s = f"{seconds:g} s"
        label = f"POST /ingest, 1 event, {ingest_load.ONE_EVENT_CLIENTS} clients, {s}, all running"
        run = await self.step(
            "live ingest", lambda: ingest_load.measure(self.world, self.logs, seconds)
        )
        if run is None:
            self.failed("7", label, "live ingest")
            return
        one, alone, busy = run.one_event, run.batches_alone, run.batches_with_consumers
        batch = ingest_load.BATCH
        self.table.add(Figure("7", label, "requests/s", [one.rate]))
        self.table.add(
            Figure(
                "7",
                "  ÷ GET /leads?limit=1 requests/s, same run",
                "x",
                [run.ingest_to_read],
                self.target(">=", 0.5),
            )
        )
        self.table.add(Figure("7", "  GET /leads?limit=1", "requests/s", [run.reads.rate]))
        self.table.add(
            Figure("7", "  p99", "ms", [one.percentile(99) * 1000], self.target("<=", 50))
        )
        self.table.add(Figure("7", "  errors", "errors", [one.errors], self.target("<=", 0)))
        label = (
            f"POST /ingest, {batch} events, {ingest_load.BATCH_CLIENTS} clients, consumers stopped"
        )
        self.table.add(
            Figure("7", label, "events/s", [alone.rate * batch], self.target(">=", 50_000))
        )
        self.table.add(Figure("7", "  errors", "errors", [alone.errors], self.target("<=", 0)))
        self.table.add(
            Figure("7", "  the same, consumers running", "events/s", [busy.rate * batch])
        )
        self.table.add(Figure("7", "  errors", "errors", [busy.errors], self.target("<=", 0)))
        self.table.add(
            Figure(
                "7",
                "accepted events not applied exactly once",
                "events",
                [abs(run.applied - run.accepted)],
                self.target("<=", 0),
            )
        )


async def run_all(base: Settings, config: Config, logs: Path) -> Results:
    """Every measurement, in a world of its own that is cleaned up at the end."""
    async with open_world(base) as world, webhook_receiver() as receiver:
        say(f"run {world.run_id}: databases bench_{world.run_id}_*, topics bench.{world.run_id}.*")
        with tempfile.TemporaryDirectory(prefix="leadvibe-bench-") as workdir:
            harness = Harness(world, config, logs / world.run_id, Path(workdir), receiver)
            return await harness.run()
