"""The topics' records as the rows a replay stages: pure functions over decoded records.

A scored record becomes one ``rp_scored`` row (the event as the scorer applied it, where
the record sits in the log, the points it had, and the number of its points under the
rules of today), plus one ``rp_attached`` row per alias it attached and one
``rp_conflicts`` row per conflict it recorded. An events-topic record becomes one
``rp_facts`` row: where the event sits and its metadata, kept as the JSON text it came
as (Postgres makes it jsonb; it is never parsed here).

Scores are numbered rather than spelled out per row: the rules give few distinct scores
(one per event type, a few more for dated rulesets), so a row carries a small number and
:class:`ScoreIds` keeps the total and per-ruleset points of each number once.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec

from schemas import ScoredEvent
from scorer.scoring import ZERO, RuleBook, Score

StagedRow = tuple[Any, ...]


class LogRecord(Protocol):
    """What a replay needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class EventFacts(msgspec.Struct, frozen=True):
    """What a replay takes from an events-topic record: the rest comes from scored records."""

    event_id: str
    unit_id: str
    metadata: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


_facts = msgspec.json.Decoder(EventFacts)
# The codec's own decoder, called directly: schemas.decode adds a call and an exception
# translation per record, a tenth of the decoding time over two million records.
_scored = msgspec.json.Decoder(ScoredEvent)


@dataclass
class ScoreIds:
    """A number for each distinct score, and what each number stands for."""

    _ids: dict[Score, int] = field(default_factory=lambda: {ZERO: 0})
    totals: list[StagedRow] = field(default_factory=lambda: [(0, 0)])
    """(score_id, total points): the rows of ``rp_scores``."""
    parts: list[StagedRow] = field(default_factory=list)
    """(score_id, ruleset_id, points): the rows of ``rp_score_parts``."""

    _spans: dict[tuple[str, str], tuple[tuple[datetime, ...], list[int | None]]] = field(
        default_factory=dict
    )
    """By (unit, event type): the dates its score may change at, and the number of each
    span between them once met."""

    def of(self, score: Score) -> int:
        number = self._ids.get(score)
        if number is None:
            number = self._ids[score] = len(self._ids)
            self.totals.append((number, score.total))
            self.parts.extend((number, ruleset, points) for ruleset, points in score.by_ruleset)
        return number

    def of_event(self, book: RuleBook, unit_id: str, event_type: str, timestamp: datetime) -> int:
        """The number of the score ``book`` gives the event: ``of(book.score(...))``, but
        asking the book once per span of dates where that score is the same, not once per
        event (a ScoreIds serves one book)."""
        spans = self._spans.get((unit_id, event_type))
        if spans is None:
            bounds = book.bounds(unit_id, event_type)
            spans = self._spans[unit_id, event_type] = (bounds, [None] * (len(bounds) + 1))
        bounds, numbers = spans
        span = bisect_right(bounds, timestamp) if bounds else 0
        number = numbers[span]
        if number is None:
            number = numbers[span] = self.of(book.score(unit_id, event_type, timestamp))
        return number


class Units:
    """Which units a replay rebuilds: one, or every unit that exists."""

    def __init__(self, unit_ids: Iterable[str], *, only: str | None = None) -> None:
        self.ids = frozenset(unit_ids)
        self.only = only
        self._key = only.encode() if only is not None else None
        self._prefix = f"{only}:".encode() if only is not None else None

    def may_hold(self, key: bytes | None) -> bool:
        """False when the record's key says it is another unit's: an events record's key is
        its unit (``unit``; ``unit:identity`` in records written before), a scored
        record's ``unit:lead``."""
        if self._prefix is None or key is None or key == self._key:
            return True
        return key.startswith(self._prefix)


@dataclass
class StagedScored:
    """The staging rows of a run of scored records."""

    scored: list[StagedRow] = field(default_factory=list)
    attached: list[StagedRow] = field(default_factory=list)
    conflicts: list[StagedRow] = field(default_factory=list)
    undecodable: int = 0


def stage_scored(
    records: Iterable[LogRecord], units: Units, book: RuleBook, scores: ScoreIds
) -> StagedScored:
    """The rows of the scored records of ``units``, with their points under ``book``."""
    staged = StagedScored()
    rows, attached, conflicts = staged.scored, staged.attached, staged.conflicts
    wanted = units.ids
    may_hold = units.may_hold
    number = scores.of_event
    decode = _scored.decode
    for r in records:
        if not may_hold(r.key):
            continue
        value = r.value
        if value is None:
            staged.undecodable += 1
            continue
        try:
            s = decode(value)
        except msgspec.DecodeError:
            staged.undecodable += 1
            continue
        unit_id = s.unit_id
        if unit_id not in wanted:
            continue
        event_id, partition, offset = s.event_id, r.partition, r.offset
        rows.append(
            (
                unit_id,
                event_id,
                s.lead_id,
                s.event_type,
                s.timestamp,
                s.source,
                s.skip_triggers,
                s.import_id,
                s.row,
                s.lead_created,
                s.replay,
                s.alias_conflicts is not None,
                partition,
                offset,
                r.timestamp,
                s.points,
                s.score_before,
                s.score_after,
                number(book, unit_id, s.event_type, s.timestamp),
            )
        )
        if s.aliases_attached:
            for n, alias in enumerate(s.aliases_attached):
                attached.append((unit_id, event_id, partition, offset, n, alias.kind, alias.value))
        if s.alias_conflicts:
            for n, conflict in enumerate(s.alias_conflicts):
                alias = conflict.alias
                conflicts.append(
                    (
                        unit_id,
                        event_id,
                        partition,
                        offset,
                        n,
                        alias.kind,
                        alias.value,
                        conflict.owner_lead_id,
                    )
                )
    return staged


def stage_facts(records: Iterable[LogRecord], units: Units) -> tuple[list[StagedRow], int]:
    """The ``rp_facts`` rows of the events of ``units``, and how many did not decode.

    Records that do not decode were dead-lettered by the scorer, which never applied them:
    no scored record will ask for their facts.
    """
    rows: list[StagedRow] = []
    undecodable = 0
    wanted = units.ids
    for r in records:
        if not units.may_hold(r.key) or r.value is None:
            continue
        try:
            facts = _facts.decode(r.value)
        except msgspec.DecodeError:
            undecodable += 1
            continue
        if facts.unit_id in wanted:
            rows.append(
                (
                    facts.unit_id,
                    facts.event_id,
                    r.partition,
                    r.offset,
                    bytes(facts.metadata).decode(),
                )
            )
    return rows, undecodable
