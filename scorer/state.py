"""The scorer's state: its units' leads and alias owners, kept in memory, written behind.

The events topic is keyed by unit (:func:`schemas.topics.partition_key`), so every event
of a unit reaches one partition, hence one scorer, and that scorer is the only writer of
the unit's leads and aliases (Kafka Streams' model, with Postgres as the store). It keeps
what it has read or written of them here and resolves and scores without a round trip;
each batch writes only the rows it changed, with their absolute values, in the
transaction that stores its offsets.

What is held is a cache of committed rows, never the only copy: a key not held is loaded
from Postgres (one query per batch for all the keys missing), and anything that fails
drops the state (:meth:`ScorerState.clear`) so the retried batch reads the rows again.
It is dropped for a unit whose projections were rewritten behind the scorer (a replay's
switch bumps the unit's generation, compared per batch), and whole on every partition
assignment or revocation and after any failed batch.

Memory is bounded by ``capacity`` entries (leads plus alias owners): past it, the oldest
loaded half is dropped at the start of the next batch, to be loaded again when named.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scorer.resolution import AliasKey
from scorer.scoring import RuleBook, Ruleset

LeadKey = tuple[str, str]
"""(unit_id, lead_id)."""

CAPACITY = 1_000_000
"""Leads and alias owners held by default (LEADVIBE_SCORER_STATE_ENTRIES): a few hundred
megabytes at most."""


@dataclass(slots=True)
class Lead:
    """A lead as the projections hold it (or will, once the batch commits)."""

    score: int = 0
    event_count: int = 0
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    by_ruleset: dict[str, int] = field(default_factory=dict)
    """Points per ruleset that ever scored the lead (``lead_ruleset_scores``)."""
    stored: bool = False
    """The leads table has its row (False: a lead this batch creates)."""


@dataclass(frozen=True, slots=True)
class UnitVersion:
    """What a batch reads of each of its units, to tell whether what is held is current."""

    generation: int
    """Bumped by whatever rewrites the unit's projections behind the scorer."""
    rules: str
    """Changes whenever the unit's rulesets change (their count and latest update)."""


@dataclass(slots=True)
class _Unit:
    version: UnitVersion
    rulesets: list[Ruleset] | None = None
    """The unit's active rulesets as of ``version.rules`` (None: not read yet)."""


class ScorerState:
    """Leads, alias owners and rulesets of the units this scorer has seen."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.leads: dict[LeadKey, Lead] = {}
        self.owners: dict[AliasKey, str] = {}
        self._units: dict[str, _Unit] = {}
        self._book: RuleBook | None = None

    def __len__(self) -> int:
        return len(self.leads) + len(self.owners)

    def clear(self) -> None:
        """Forget everything: the next batch reads what it needs from Postgres."""
        self.leads.clear()
        self.owners.clear()
        self._units.clear()
        self._book = None

    def drop_rows(self) -> None:
        """Forget the leads and owners held (a batch lost a race: they may be stale)."""
        self.leads.clear()
        self.owners.clear()

    def check(self, versions: Mapping[str, UnitVersion]) -> list[str]:
        """Compare the batch's units with what is held; return the units whose rulesets
        must be read. A unit whose generation moved is forgotten first."""
        stale = [
            unit_id
            for unit_id, version in versions.items()
            if (held := self._units.get(unit_id)) is not None
            and held.version.generation != version.generation
        ]
        if stale:
            self._forget(set(stale))
        unread: list[str] = []
        for unit_id, version in versions.items():
            held = self._units.get(unit_id)
            if held is None:
                self._units[unit_id] = _Unit(version)
                unread.append(unit_id)
            elif held.version != version or held.rulesets is None:
                held.version = version
                held.rulesets = None
                unread.append(unit_id)
        return unread

    def set_rulesets(self, unit_ids: Iterable[str], rulesets: Iterable[Ruleset]) -> None:
        """The active rulesets of ``unit_ids``, read after :meth:`check` asked for them."""
        found: dict[str, list[Ruleset]] = {unit_id: [] for unit_id in unit_ids}
        for ruleset in rulesets:
            found[ruleset.unit_id].append(ruleset)
        for unit_id, unit_rulesets in found.items():
            self._units[unit_id].rulesets = unit_rulesets
        if found:
            self._book = None

    @property
    def book(self) -> RuleBook:
        """The rule book of every unit held (rebuilt only when a unit's rulesets change)."""
        if self._book is None:
            self._book = RuleBook.of(
                r for unit in self._units.values() for r in (unit.rulesets or ())
            )
        return self._book

    def trim(self) -> None:
        """Drop the oldest loaded half of the leads and owners when past ``capacity``.

        Call between batches only: a batch holds references to the leads it changes.
        """
        if len(self) > self.capacity:
            _drop_oldest_half(self.leads)
        if len(self) > self.capacity:
            _drop_oldest_half(self.owners)

    def _forget(self, unit_ids: set[str]) -> None:
        self.leads = {k: v for k, v in self.leads.items() if k[0] not in unit_ids}
        self.owners = {k: v for k, v in self.owners.items() if k[0] not in unit_ids}
        for unit_id in unit_ids:
            self._units.pop(unit_id, None)
        self._book = None


def _drop_oldest_half(held: dict[Any, Any]) -> None:
    """Delete the first half of ``held`` in insertion order (the keys loaded longest ago)."""
    for key in list(itertools.islice(held, len(held) // 2)):
        del held[key]
