"""The scorer: events in, leads and scores out, each batch applied exactly once.

A member of the consumer group ``leadvibe-scorer`` on the events topic; several processes
share its partitions. Each ``getmany()`` batch is one Postgres transaction (the shared
consume loop, :mod:`leadvibe.consuming`) that writes the projections and the consumed
offsets together, so a crash at any moment leaves either all of a batch or none of it.

Within the transaction, per batch and with at most one statement per table:

1. the batch's units are read: records whose unit does not exist are rejected (dead
   letters, with the reason); for the others, their projection generation and rulesets'
   version tell whether the state held in memory is current (:mod:`scorer.state`);
2. events already applied, or repeated within the batch, are skipped: an event id counts
   once per unit, however often it was published (the events' primary key is the
   guarantee; the batch reads which were applied first only when it expects some, see
   ``ScoreBatch.check_applied_first``);
3. identities are resolved and events scored by the pure core (:mod:`scorer.resolution`,
   :mod:`scorer.scoring`, :mod:`scorer.batch`) against the leads and alias owners held in
   memory; only those not held yet are read (the events topic is keyed by unit, so this
   scorer is the one writer of its units' rows);
4. new aliases are claimed, and the leads, events, per-ruleset scores, conflicts and
   import progress the batch changed are written with their absolute values. If another
   writer claimed one of the batch's new aliases or wrote one of its leads (records keyed
   the old way, in another partition), the unique key or the lead's event count tells;
   the batch's writes are rolled back to a savepoint, the state's rows dropped and steps
   2-4 run again with what the other writer committed.

**Scored records are published inside the transaction, before it commits** (and
``publish_batched`` returns only once Kafka acknowledged them all). A crash after the
publish and before the commit leaves the offsets where they were: the batch is processed
again from the stored offsets and publishes identical records again (same event ids,
leads, points and scores, since the projections were rolled back too; a lead created
from aliases has an id derived from its first event, so it gets the same id again).
Consumers of ``leadvibe.scored`` therefore see every applied event at least once and
must de-duplicate by event: the trigger service's firings are unique per (trigger,
event). Publishing after the commit instead would lose the records of a crash between
the commit and the publish, with nothing left to send them again.

**Commits do not wait for the disk** (``synchronous_commit = off`` on the scorer's own
connections, :data:`SERVER_SETTINGS`). A crash of Postgres or of the machine may lose the
last batches committed, but only whole batches, only the latest ones (WAL is replayed in
order, so a batch survives only with every batch committed before it, including another
scorer's whose rows it read), and each with its offsets: the scorer consumes them again
from the offsets that survived and applies them once, publishing their scored records
again exactly as after a scorer crash between publish and commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from leadvibe.consuming import Consumed, Rejected
from leadvibe.db import Connection
from leadvibe.failures import RetryBatch
from leadvibe.producing import publish_batched
from leadvibe.service import run_consumer
from leadvibe.settings import Settings
from schemas import LeadEvent, ScoredEvent, encode
from schemas.ids import sortable_id
from scorer import batch, store
from scorer.resolution import alias_keys, identities_of, resolve
from scorer.state import CAPACITY, Lead, LeadKey, ScorerState

log = logging.getLogger(__name__)

GROUP = "leadvibe-scorer"

MAX_RECORDS = 20_000
"""Records per batch (one transaction); large batches amortise the per-batch statements."""

SERVER_SETTINGS = {"synchronous_commit": "off"}
"""The scorer's Postgres sessions do not wait for each batch's WAL to reach the disk.

A commit returns once its WAL is written to the server's memory; the WAL writer flushes
it within ``wal_writer_delay`` (200 ms by default). Waiting for the flush cost about a
tenth of a scorer's time (each 20,000-event batch writes megabytes of WAL). What it
risks: a crash of the Postgres server or of the machine (not of the scorer) can lose the
last batches committed before it, never part of one, and since WAL is replayed in order,
never a batch without the batches before it. Each lost batch loses its consumed offsets
with its effects (they are in the same transaction), so after the restart the scorer
consumes those records again from the offsets that survived and applies them once: the
projections stay exactly-once. Their scored records were published before the commit, so
they are published again, as after a scorer crash between publish and commit; readers of
``leadvibe.scored`` de-duplicate by event already. Nothing outside the transaction acts
on a commit having happened (the Kafka offsets are not committed; the next batch's work
is itself in a later transaction). Other sessions (the gateway, a replay) keep their own
setting; a synchronous commit after one of the scorer's makes that one durable too."""

PARTITION_FETCH_MB = 16
"""The most one fetch brings of a partition. A unit's events all come from one partition
(the events topic is keyed by unit), and a batch is what the fetches in hand hold: with
the consume loop's default of 4 MB, a batch of the benchmark's events held about 13,800
records instead of ``MAX_RECORDS``, and each batch writes every lead it touches once."""

RACE_ATTEMPTS = 5
"""Times a batch is resolved again after losing a race, before the whole batch is retried."""

NO_IDENTITY = "no identity: the event has neither a lead_id nor a usable alias"


class LostRace(Exception):
    """Another writer claimed one of the batch's new aliases, wrote one of its leads or
    applied one of its events, after this batch read them (or the state held them)."""


class AlreadyApplied(LostRace):
    """An event of the batch was applied before, which the batch did not check first."""


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    max_records: int = MAX_RECORDS,
    state_entries: int = CAPACITY,
) -> None:
    """Score events until ``stop`` is set (default: until SIGTERM or SIGINT)."""

    def make_handler(pool: asyncpg.Pool, producer: AIOKafkaProducer) -> ScoreBatch:
        return ScoreBatch(producer, settings.topics.scored, ScorerState(state_entries))

    await run_consumer(
        settings,
        topic=settings.topics.events,
        group=GROUP,
        record_type=LeadEvent,
        make_handler=make_handler,
        stop=stop,
        max_records=max_records,
        producer_linger_ms=0,  # publish_batched fills whole batches: a linger only adds delay
        server_settings=SERVER_SETTINGS,
        partition_fetch_mb=PARTITION_FETCH_MB,
    )


class ScoreBatch:
    """The batch handler: applies a batch of events and publishes their scored records.

    Holds its units' leads, alias owners and rulesets in memory (:mod:`scorer.state`);
    the consume loop calls :meth:`forget` on every partition assignment or revocation and
    after any batch that did not commit.
    """

    def __init__(
        self, producer: AIOKafkaProducer, scored_topic: str, state: ScorerState | None = None
    ) -> None:
        self.producer = producer
        self.scored_topic = scored_topic
        self.state = ScorerState() if state is None else state
        self.races_lost = 0
        """Times a batch was resolved again because another scorer got there first."""
        self.check_applied_first = False
        """Whether the next batch reads which of its events were applied before.

        Republished events are rare, so a batch first assumes it has none: the events'
        primary key refuses a duplicate, and the batch is then applied again, checking
        first. After a batch that had duplicates, the next one checks first too (an
        upload retried whole is all duplicates)."""

    def forget(self) -> None:
        """Drop the state: what a batch that did not commit changed in it is not so."""
        self.state.clear()

    async def __call__(
        self, conn: Connection, records: Sequence[Consumed[LeadEvent]]
    ) -> list[Rejected]:
        try:
            return await self._apply(conn, records)
        except BaseException:
            self.forget()  # the savepoint is rolled back, the state changed with it
            raise

    async def _apply(
        self, conn: Connection, records: Sequence[Consumed[LeadEvent]]
    ) -> list[Rejected]:
        state = self.state
        state.trim()
        versions = await store.unit_versions(conn, {c.record.unit_id for c in records})
        rejected = [
            Rejected(c.partition, c.offset, f"unit {c.record.unit_id!r} does not exist")
            for c in records
            if c.record.unit_id not in versions
        ]
        live = [c for c in records if c.record.unit_id in versions]
        unread = state.check(versions)
        if unread:
            state.set_rulesets(unread, await store.active_rulesets(conn, unread))
        check = self.check_applied_first
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                async with conn.transaction():  # savepoint: undone alone after a lost race
                    outcome = await apply(conn, live, state, check_applied=check)
                break
            except AlreadyApplied:
                log.debug("the batch has events applied before; applying it again, checking")
                state.drop_rows()
                check = True
            except LostRace as race:
                state.drop_rows()
                self.races_lost += 1
                log.info("lost a race (%s), resolving the batch again (%d)", race, attempt)
        else:
            raise RetryBatch(f"lost {RACE_ATTEMPTS} races in a row to other scorers")
        self.check_applied_first = outcome.duplicates > 0
        await publish_batched(self.producer, self.scored_topic, outcome.scored)
        return rejected + outcome.rejected


@dataclass(frozen=True)
class Outcome:
    scored: list[tuple[bytes | None, bytes]]
    """The scored records to publish, keyed ``unit_id:lead_id``."""
    rejected: list[Rejected]
    duplicates: int
    """Events skipped because they were applied before (or earlier in the batch)."""


async def apply(
    conn: Connection,
    records: Sequence[Consumed[LeadEvent]],
    state: ScorerState,
    *,
    check_applied: bool = True,
) -> Outcome:
    """Apply the records of existing units to ``state`` and write what changed; return what
    to publish and what was rejected. ``state`` holds the units' rulesets (checked first).

    Without ``check_applied``, the batch assumes none of its events was applied before and
    raises AlreadyApplied (after writing, so inside a savepoint) if one was. Raises
    LostRace when another writer changed a row the state held or was about to claim;
    either way ``state`` is then wrong and must be dropped.
    """
    fresh = await _not_applied_yet(conn, records, check_applied)
    if not fresh:
        return Outcome([], [], len(records))
    events = [c.record for c in fresh]
    identities = identities_of(events)
    owners = state.owners
    missing = [key for key in alias_keys(identities) if key not in owners]
    if missing:
        owners.update(await store.alias_owners(conn, missing))
    resolved = resolve(identities, owners, mint=lambda i: minted_lead_id(fresh[i]))
    leads = state.leads
    unheld: set[LeadKey] = set()
    for event, lead in zip(events, resolved, strict=True):
        if lead is not None:
            key = (event.unit_id, lead[0])
            if key not in leads:
                if lead[1]:  # minted from this event: not stored anywhere yet
                    leads[key] = Lead()
                else:
                    unheld.add(key)
    if unheld:
        stored = await store.load_leads(conn, unheld)
        for key in unheld:
            leads[key] = stored.get(key) or Lead()
    changes = batch.score_batch(events, resolved, state.book, leads)

    if await store.claim_aliases(conn, changes.claims) < len(changes.claims):
        raise LostRace("an alias was claimed by another scorer")
    if not await store.write_leads(conn, changes.leads, leads):
        raise LostRace("a lead was written by another scorer")
    if not await store.insert_events(conn, changes.rows):
        if check_applied:
            raise LostRace("an event was applied by another scorer")
        raise AlreadyApplied
    await store.write_ruleset_scores(conn, changes.ruleset_scores, leads)
    await store.record_conflicts(conn, changes.conflicts)
    await store.add_import_progress(conn, [(*key, n) for key, n in changes.imports.items()])

    unresolved = [
        Rejected(fresh[i].partition, fresh[i].offset, NO_IDENTITY) for i in changes.unresolved
    ]
    return Outcome(_scored_records(changes.scored), unresolved, len(records) - len(fresh))


def _scored_records(scored: Sequence[ScoredEvent]) -> list[tuple[bytes | None, bytes]]:
    """(key ``unit_id:lead_id``, value) of each scored record, each lead's key made once."""
    keys: dict[tuple[str, str], bytes] = {}
    records: list[tuple[bytes | None, bytes]] = []
    for s in scored:
        lead = (s.unit_id, s.lead_id)
        key = keys.get(lead)
        if key is None:
            key = keys[lead] = f"{s.unit_id}:{s.lead_id}".encode()
        records.append((key, encode(s)))
    return records


async def _not_applied_yet(
    conn: Connection, records: Sequence[Consumed[LeadEvent]], check_applied: bool
) -> list[Consumed[LeadEvent]]:
    """The first record of each event id (not applied before, when ``check_applied``)."""
    firsts: dict[tuple[str, str], Consumed[LeadEvent]] = {}
    for c in records:
        firsts.setdefault((c.record.unit_id, c.record.event_id), c)
    if not check_applied:
        return list(firsts.values())
    applied = await store.applied_events(conn, list(firsts))
    return [c for key, c in firsts.items() if key not in applied]


def minted_lead_id(consumed: Consumed[LeadEvent]) -> str:
    """The id of a lead created from this record's aliases, the same each time it is processed.

    Sortable by the time the event was published, and unique since an event id is.
    """
    event = consumed.record
    millis = consumed.timestamp_ms
    if millis < 0:
        millis = int(event.timestamp.timestamp() * 1000)
    seed = f"{event.unit_id}\x1f{event.event_id}".encode()
    return sortable_id("ld_", millis=millis, entropy=hashlib.blake2b(seed, digest_size=10).digest())
