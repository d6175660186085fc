"""Replay and rescore: every projection of a unit rebuilt from the topics, under today's rules.

``leadvibe replay [--unit UNIT]`` rebuilds the leads, aliases, alias conflicts, events,
per-ruleset scores and import progress of one unit (or of all) from ``leadvibe.scored``
and ``leadvibe.events`` alone. ``leadvibe rescore`` is the same run, reading one topic
instead of two (see below). Both may run while the scorer applies new events.

What the rebuild takes from where
---------------------------------
- **Identity comes from the decisions in the log, never decided again.** Every scored
  record says which lead its event went to, whether it created that lead, which aliases it
  attached and which conflicts it recorded. Resolution depends on the order in which
  aliases were first seen, and a replay does not see partitions in the scorer's
  interleaving: deciding again could give other leads. Of several records for one event
  (published again after a crash, or by an earlier replay), the latest counts.
- **Which events are applied is what the scorer's stored offsets say.** An event counts
  when one of its occurrences in ``leadvibe.events`` lies below the scorer's offset of its
  partition. That leaves out the records of a batch the scorer published and then rolled
  back (it died before committing): the scorer applies those events again later. With no
  stored offsets at all (the database was lost), every scored record counts.
- **The events topic gives what scored records lack**: metadata.
- **Points are today's rules applied to each event** (:class:`~scorer.scoring.RuleBook`,
  the scorer's own), read once when the run starts. An event's ``score_after`` is the
  running sum of its lead's points in the order the scorer applied them: a lead's
  records share a partition of ``leadvibe.scored`` (their key is ``unit:lead``), so their
  offsets are that order.

How it runs beside the scorer
-----------------------------
1. Without holding anything: note the end offsets of both topics, stage every record up
   to them into temporary tables (binary COPY) and build the new projections there, with
   set-based statements (:mod:`scorer.rebuild`).
2. In one transaction: lock the scorer's offset rows (``consumer_offsets``, group
   ``leadvibe-scorer``) as the scorer's own batches do, first thing in theirs: a batch in
   flight finishes first, the next one waits. Then nothing is applied that the
   projections do not show, and every batch committed has its scored records in Kafka
   (the scorer publishes before it commits). Stage the records appended since step 1,
   rebuild in staging every lead they touch (whole: with every event that shares a record
   with it), and switch the units' rows to staging, writing only the rows that differ.
   Commit.
3. Readers see the old projections until the commit and the new ones after: never a mix.
   The scorer resumes from its offsets, on top of the rebuilt projections, so an event
   that arrived during the run is applied exactly once, by the scorer, and nothing
   applied before is lost: the rebuild holds exactly the events the offsets cover.

The scorer waits during step 2 only (its events queue up in Kafka; uploads go on being
accepted): the summary says for how long. That time grows with what the switch writes and
what was applied meanwhile, not with the size of the log.

Records it publishes
--------------------
For each event whose points, score before or score after differ from its latest scored
record, a ``ScoredEvent`` with ``replay = true`` and the decisions of the record it
supersedes: the latest record of every event in ``leadvibe.scored`` then tells its
current score. A replay with unchanged rules publishes nothing; a rescore publishes what
moved. The trigger service never fires on ``replay`` records, so no trigger fires and no
webhook is sent because of a replay or rescore; nor can the scorer's later records fire
for crossings the rescore made: they start from the rescored score. The records go out
after the commit: if the run dies in between, the next run finds the same differences
and publishes them.

Rescore: a replay that reads one topic
--------------------------------------
Rescoring needs every event's points under today's rules and each lead's running score
in the order its events were applied. That order is in ``leadvibe.scored``, not in the
events projection (one batch's events share a ``scored_at``), so a set-based pass over
the projection could not give ``score_after``; rescore is this same run. What a rule
change cannot touch, which events were applied and their metadata, it takes from the
events projection instead of reading ``leadvibe.events`` (the scorer's own record of what
it applied, exact under the lock): one topic read instead of two. Identity still comes
from the log. A replay trusts no projection and reads both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from leadvibe.consuming import load_offsets
from leadvibe.producing import open_producer, publish_batched
from leadvibe.reading import Offsets, end_offsets, open_reader, read_between, remaining
from leadvibe.settings import Settings
from schemas import Alias, ConflictingAlias, ScoredEvent, encode
from scorer import rebuild, store
from scorer.log_rows import ScoreIds, StagedScored, Units, stage_facts, stage_scored
from scorer.progress import Progress, Silent
from scorer.rebuild import Totals, Written
from scorer.scoring import RuleBook
from scorer.service import GROUP

PUBLISH_CHUNK: Final = 20_000
"""Replay records built and published at a time."""


class ReplayError(RuntimeError):
    """The replay cannot run or cannot finish; nothing was changed."""


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay or rescore did."""

    units: int
    totals: Totals
    """What the rebuilt projections hold, and how many scores moved."""
    written: dict[str, Written]
    """Rows deleted, updated and inserted in each projection."""
    records_read: int
    published: int
    """Replay records published for events whose scores moved."""
    seconds: float
    paused: float
    """Seconds the scorer waited for the switch (the lock held)."""
    log_alone: bool = False
    """The scorer had stored no offsets: every scored record counted."""
    undecodable: int = 0
    caught_up: tuple[int, int] = (0, 0)
    """Leads and events rebuilt again while the scorer waited, for what it applied during
    the run."""

    @property
    def rate(self) -> float:
        """Events rebuilt per second, over the whole run."""
        return self.totals.events / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        t = self.totals
        changed = sum(w.deleted + w.updated + w.inserted for w in self.written.values())
        lines = [
            f"{self.units} unit(s): {t.leads:,} leads, {t.events:,} events, {t.aliases:,} "
            f"aliases, {t.conflicts:,} alias conflicts, {t.imports:,} imports",
            f"scores changed: {t.leads_rescored:,} leads, {t.events_rescored:,} events' points "
            f"(against their latest scored records); {self.published:,} replay records published",
            f"projection rows written: {changed:,} ("
            + ", ".join(
                f"{table} -{w.deleted:,} ~{w.updated:,} +{w.inserted:,}"
                for table, w in self.written.items()
                if w.deleted or w.updated or w.inserted
            )
            + ")",
            f"{self.records_read:,} records read in {self.seconds:.1f} s "
            f"({self.rate:,.0f} events/s); the scorer waited {self.paused:.1f} s, while "
            f"{self.caught_up[0]:,} leads ({self.caught_up[1]:,} events) it had touched since "
            "were rebuilt again",
        ]
        if self.log_alone:
            lines.append("the scorer had no stored offsets: every scored record counted")
        if self.undecodable:
            lines.append(f"{self.undecodable:,} records could not be decoded and were skipped")
        return lines


async def rescore(
    settings: Settings, unit_id: str | None = None, *, progress: Progress | None = None
) -> ReplaySummary:
    """Every score of ``unit_id`` (default: every unit) again, under today's rules.

    A replay that takes which events were applied, and their metadata, from the events
    projection rather than from ``leadvibe.events``: it reads one topic, not two.
    """
    return await _rebuild(settings, unit_id, progress or Silent(), facts_from_projection=True)


async def replay(
    settings: Settings, unit_id: str | None = None, *, progress: Progress | None = None
) -> ReplaySummary:
    """Rebuild the projections of ``unit_id`` (default: every unit) from the topics.

    Raises ReplayError, with nothing changed, when the unit does not exist, another replay
    is running, or the scorer began consuming a database that had no offsets.
    """
    return await _rebuild(settings, unit_id, progress or Silent(), facts_from_projection=False)


async def _rebuild(
    settings: Settings, unit_id: str | None, progress: Progress, *, facts_from_projection: bool
) -> ReplaySummary:
    started = time.perf_counter()
    topics = settings.topics
    run = _Run(settings, progress, facts_from_projection=facts_from_projection)
    conn = await asyncpg.connect(settings.database_url, server_settings=rebuild.SESSION_SETTINGS)
    try:
        if not await rebuild.try_lock(conn):
            raise ReplayError("another replay or rescore is running")
        unit_ids = await rebuild.units_of(conn, unit_id)
        if not unit_ids:
            raise ReplayError(
                f"no unit {unit_id!r}" if unit_id is not None else "no unit exists yet"
            )
        run.units = Units(unit_ids, only=unit_id)
        run.book = RuleBook.of(await store.active_rulesets(conn, unit_ids))
        # A rescore goes by the events projection: no offsets to check occurrences against.
        stored = {} if facts_from_projection else await load_offsets(conn, GROUP, topics.events)
        await rebuild.create_staging(conn)
        async with open_reader(settings.kafka_bootstrap_servers) as reader:
            # Scored first: an event a record below this end is about lies below the other.
            try:
                scored_end = await end_offsets(reader, topics.scored)
                events_end = await end_offsets(reader, topics.events)
            except LookupError as exc:
                raise ReplayError(f"{exc} (leadvibe topics create makes it)") from None
            await run.stage(conn, reader, {}, scored_end, {}, events_end, "reading")
            if facts_from_projection:
                await rebuild.facts_from_projection(conn, unit_ids)
            # A partition the scorer has not consumed yet: nothing of it is applied.
            await rebuild.stage_offsets(
                conn, {p: stored.get(p, 0) for p in events_end} if stored else {}
            )
            await rebuild.stage_scores(conn, run.scores.totals, run.scores.parts)
            run.progress.phase("rebuilding", rebuild.BUILD_STEPS, what="steps")
            await rebuild.build(conn, step=run.progress.advance)
            run.progress.phase("waiting for the scorer's batch in flight", what="")
            async with conn.transaction():
                locked_at = time.perf_counter()
                locked = await rebuild.lock_scorer(conn, GROUP, topics.events, list(events_end))
                if not stored and not facts_from_projection and any(locked.values()):
                    raise ReplayError(
                        "the scorer began consuming while the replay read a log with no "
                        "stored offsets (a lost database): stop it, replay, then start it"
                    )
                await rebuild.begin_second_pass(conn)
                await run.stage(
                    conn,
                    reader,
                    scored_end,
                    await end_offsets(reader, topics.scored),
                    events_end,
                    await end_offsets(reader, topics.events),
                    "catching up",
                )
                if facts_from_projection:
                    await rebuild.facts_from_projection(conn, unit_ids)
                await rebuild.stage_offsets(conn, locked if stored else {})
                await rebuild.stage_scores(conn, run.scores.totals, run.scores.parts)
                run.progress.phase(
                    "rebuilding what changed since", rebuild.REBUILD_STEPS, what="steps"
                )
                run.rebuilt = await rebuild.rebuild_affected(conn, step=run.progress.advance)
                totals = await rebuild.totals(conn)
                run.progress.phase("switching", len(rebuild.PROJECTIONS), what="projections")
                written = await rebuild.switch(conn, unit_ids, step=run.progress.advance)
                run.progress.end()
            paused = time.perf_counter() - locked_at
        published = await run.publish(conn, totals.to_publish)
    finally:
        await conn.close()
    return ReplaySummary(
        units=len(unit_ids),
        totals=totals,
        written=written,
        records_read=run.read,
        published=published,
        seconds=time.perf_counter() - started,
        paused=paused,
        log_alone=not stored and not facts_from_projection,
        undecodable=run.undecodable,
        caught_up=run.rebuilt,
    )


@dataclass
class _Run:
    settings: Settings
    progress: Progress
    facts_from_projection: bool = False
    """Take applied events and their metadata from the events projection (a rescore)."""
    units: Units = field(default_factory=lambda: Units(()))
    book: RuleBook = field(default_factory=RuleBook)
    scores: ScoreIds = field(default_factory=ScoreIds)
    read: int = 0
    undecodable: int = 0
    rebuilt: tuple[int, int] = (0, 0)
    """Leads and events the second pass rebuilt."""

    async def stage(
        self,
        conn: asyncpg.Connection,
        reader: AIOKafkaConsumer,
        scored_from: Offsets,
        scored_to: Offsets,
        events_from: Offsets,
        events_to: Offsets,
        phase: str,
    ) -> None:
        """Stage the records of both topics between the offsets given."""
        topics = self.settings.topics
        if self.facts_from_projection:
            events_from = events_to = {}
        total = remaining(scored_from, scored_to) + remaining(events_from, events_to)
        self.progress.phase(phase, total)
        # A batch's COPY runs while the next batch is decoded: Postgres ingests on its core
        # while this process decodes on its own. One COPY at a time on the connection.
        copying: asyncio.Task[None] | None = None
        async for batch in self._read(reader, topics.scored, scored_from, scored_to):
            staged = stage_scored(batch, self.units, self.book, self.scores)
            self.undecodable += staged.undecodable
            if copying is not None:
                await copying
            copying = asyncio.create_task(_copy_scored(conn, staged))
        async for batch in self._read(reader, topics.events, events_from, events_to):
            facts, undecodable = stage_facts(batch, self.units)
            self.undecodable += undecodable
            if copying is not None:
                await copying
            copying = asyncio.create_task(
                rebuild.copy_rows(conn, "rp_facts", rebuild.FACT_COLUMNS, facts)
            )
        if copying is not None:
            await copying
        self.progress.end()

    async def _read(
        self, reader: AIOKafkaConsumer, topic: str, start: Offsets, end: Offsets
    ) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        async for batch in read_between(reader, topic, start, end):
            self.read += len(batch)
            self.progress.advance(len(batch))
            yield batch

    async def publish(self, conn: asyncpg.Connection, count: int) -> int:
        """Publish a replay record for every rebuilt event whose scores moved."""
        if not count:
            return 0
        self.progress.phase("publishing replay records", count)
        published = 0
        async with (
            open_producer(self.settings.kafka_bootstrap_servers, linger_ms=0) as producer,
            conn.transaction(),
        ):
            cursor = await conn.cursor(rebuild.CHANGED_RECORDS)
            while rows := await cursor.fetch(PUBLISH_CHUNK):
                published += await _publish(producer, self.settings.topics.scored, rows)
                self.progress.advance(len(rows))
        self.progress.end()
        return published


async def _copy_scored(conn: asyncpg.Connection, staged: StagedScored) -> None:
    await rebuild.copy_rows(conn, "rp_scored", rebuild.SCORED_COLUMNS, staged.scored)
    await rebuild.copy_rows(conn, "rp_attached", rebuild.ATTACHED_COLUMNS, staged.attached)
    await rebuild.copy_rows(conn, "rp_conflicts", rebuild.CONFLICT_COLUMNS, staged.conflicts)


async def _publish(producer: AIOKafkaProducer, topic: str, rows: list[asyncpg.Record]) -> int:
    records = []
    for r in rows:
        record = ScoredEvent(
            event_id=r["event_id"],
            unit_id=r["unit_id"],
            lead_id=r["lead_id"],
            event_type=r["event_type"],
            timestamp=r["occurred_at"],
            points=r["points"],
            score_before=r["score_after"] - r["points"],
            score_after=r["score_after"],
            skip_triggers=r["skip_triggers"],
            source=r["source"],
            replay=True,
            import_id=r["import_id"],
            row=r["import_row"],
            lead_created=r["lead_created"],
            aliases_attached=tuple(
                Alias(kind, value)
                for kind, value in zip(r["attached_kinds"], r["attached_values"], strict=True)
            ),
            alias_conflicts=tuple(
                ConflictingAlias(Alias(kind, value), owner)
                for kind, value, owner in zip(
                    r["conflict_kinds"], r["conflict_values"], r["conflict_owners"], strict=True
                )
            )
            if r["conflicts_known"]
            else None,
        )
        records.append((f"{record.unit_id}:{record.lead_id}".encode(), encode(record)))
    return await publish_batched(producer, topic, records)
