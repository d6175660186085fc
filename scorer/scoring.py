"""Scoring: a unit's rulesets and an event give the event's points, per ruleset and in total.

Pure functions over plain values (DESIGN.md decision 7): a ruleset counts for an event
when it is active and its validity dates contain the event's own timestamp
(``starts_at <= timestamp < ends_at``, either bound optional); the event's points are the
sum over those rulesets of the points their rules give its type. An event whose type no
rule names scores 0 and is still applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Ruleset:
    """An active ruleset of a unit, as the scorer reads it (inactive ones are not read)."""

    ruleset_id: str
    unit_id: str
    points: dict[str, int]
    """Points by event type."""
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def contains(self, timestamp: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= timestamp) and (
            self.ends_at is None or timestamp < self.ends_at
        )


@dataclass(frozen=True, slots=True)
class _Rule:
    ruleset: Ruleset
    points: int


@dataclass(frozen=True, slots=True)
class Score:
    """An event's points: the total and each counting ruleset's share."""

    total: int
    by_ruleset: tuple[tuple[str, int], ...] = ()


ZERO = Score(0)


@dataclass(frozen=True)
class RuleBook:
    """Rulesets indexed by (unit, event type), so scoring an event is a dict lookup or two."""

    _fixed: dict[tuple[str, str], Score] = field(default_factory=dict)
    """The score of the (unit, event type)s whose rulesets have no dates: one per key."""
    _dated: dict[tuple[str, str], tuple[_Rule, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, rulesets: Iterable[Ruleset]) -> RuleBook:
        rules: dict[tuple[str, str], list[_Rule]] = {}
        for ruleset in sorted(rulesets, key=lambda r: r.ruleset_id):
            for event_type, points in ruleset.points.items():
                rules.setdefault((ruleset.unit_id, event_type), []).append(_Rule(ruleset, points))
        fixed: dict[tuple[str, str], Score] = {}
        dated: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        for key, found in rules.items():
            if any(r.ruleset.starts_at or r.ruleset.ends_at for r in found):
                dated[key] = tuple(found)
            else:
                by_ruleset = tuple((r.ruleset.ruleset_id, r.points) for r in found)
                fixed[key] = Score(sum(p for _, p in by_ruleset), by_ruleset)
        return cls(fixed, dated)

    def bounds(self, unit_id: str, event_type: str) -> tuple[datetime, ...]:
        """The dates where the score of ``event_type`` in ``unit_id`` may change, in order:
        between two of them (and before the first, after the last) it is the same."""
        rules = self._dated.get((unit_id, event_type), ())
        return tuple(
            sorted(
                {r.ruleset.starts_at for r in rules if r.ruleset.starts_at is not None}
                | {r.ruleset.ends_at for r in rules if r.ruleset.ends_at is not None}
            )
        )

    def score(self, unit_id: str, event_type: str, timestamp: datetime) -> Score:
        """The points of an event of ``event_type`` at ``timestamp`` in ``unit_id``."""
        key = (unit_id, event_type)
        fixed = self._fixed.get(key)
        if fixed is not None:
            return fixed
        rules = self._dated.get(key)
        if rules is None:
            return ZERO
        by_ruleset = tuple(
            (rule.ruleset.ruleset_id, rule.points)
            for rule in rules
            if rule.ruleset.contains(timestamp)
        )
        if not by_ruleset:
            return ZERO
        return Score(sum(points for _, points in by_ruleset), by_ruleset)
