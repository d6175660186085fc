"""Aliases stored under a value today's normalisation no longer gives: the operator's report.

The scorer stores each alias under its normalised value and a replay keeps the identity
decisions of the log (:mod:`scorer.replay`), so when the rule changes (issue 12 added
Unicode NFKC and the removal of invisible characters to e-mails, and kept only ASCII
digits in phones) the aliases stored under the old rule stay as they are. Two kinds of
them matter, and ``leadvibe aliases collisions [--unit UNIT]`` lists both:

- **split**: stored values that now normalise alike belong to different leads (one
  person written in two Unicode forms became two leads). They stay split: merging leads
  is a feature of its own.
- **stale**: no stored value of the group is in today's form, so a new event naming the
  alias does not find its lead: with no lead id it starts a new one. A value that now
  normalises to nothing (a phone of ``+``) can no longer be named at all.

Pure core: :func:`collisions` over (stored value, lead) rows; thin shell: :func:`find`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from leadvibe.db import Connection
from schemas import AliasKind
from schemas.aliases import normalise

_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Stored:
    """An alias row: its kind and value as stored, and its lead."""

    kind: AliasKind
    value: str
    lead_id: str


@dataclass(frozen=True, slots=True)
class Collision:
    """The stored aliases of one unit that today's rule maps to ``kind`` / ``value``."""

    unit_id: str
    kind: AliasKind
    value: str
    """Today's normalised form ("" when it names no one now)."""
    stored: tuple[Stored, ...]
    """The row stored under ``value`` itself first, if any, then the others by value."""

    @property
    def lead_ids(self) -> tuple[str, ...]:
        return tuple(sorted({s.lead_id for s in self.stored}))

    @property
    def split(self) -> bool:
        """The group's aliases belong to more than one lead."""
        return len(self.lead_ids) > 1

    @property
    def stale(self) -> bool:
        """No stored value is today's form: a new event naming it misses these leads."""
        return all(s.value != self.value for s in self.stored)

    def lines(self) -> list[str]:
        """The report of this group: a headline, then one line per stored value."""
        what = [w for w, on in (("split", self.split), ("stale", self.stale)) if on]
        now = visible(self.value) if self.value else "nothing (names no one)"
        head = (
            f"{self.unit_id} {self.kind} {now}: {' and '.join(what)}; "
            f"{len(self.stored)} stored value(s) of {len(self.lead_ids)} lead(s)"
        )
        return [head] + [f"  {visible(s.value)}  {s.lead_id}" for s in self.stored]


def collisions(unit_id: str, stale: Iterable[Stored], current: Iterable[Stored]) -> list[Collision]:
    """The groups of ``unit_id`` that need an operator's look, ordered by kind and value.

    ``stale`` are the stored aliases whose value today's rule changes; ``current`` those
    stored under a value today's rule gives, among the values of ``stale``. A group of
    one stale value of one lead is reported too: new events no longer find it.
    """
    groups: dict[tuple[AliasKind, str], list[Stored]] = {}
    for alias in stale:
        groups.setdefault((alias.kind, normalise(alias.kind, alias.value)), []).append(alias)
    for alias in current:
        if (alias.kind, alias.value) in groups:
            groups[(alias.kind, alias.value)].append(alias)
    return [
        Collision(
            unit_id, kind, value, tuple(sorted(rows, key=lambda s: (s.value != value, s.value)))
        )
        for (kind, value), rows in sorted(groups.items())
    ]


def is_stale(alias: Stored) -> bool:
    return normalise(alias.kind, alias.value) != alias.value


def visible(value: str) -> str:
    """``value`` quoted, with invisible and combining characters written as ``\\uXXXX``."""
    out = []
    for char in value:
        if not char.isprintable() or unicodedata.category(char).startswith("M"):
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


async def units(conn: Connection) -> list[str]:
    """Every unit that has aliases."""
    return [r["unit_id"] for r in await conn.fetch("SELECT DISTINCT unit_id FROM aliases")]


async def find(conn: Connection, unit_id: str) -> list[Collision]:
    """The collisions of one unit: one pass over its aliases, then a lookup of the groups.

    Only the stale aliases are kept in memory; ``conn`` must not be in a transaction.
    """
    stale: list[Stored] = []
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        cursor = conn.cursor("SELECT kind, value, lead_id FROM aliases WHERE unit_id = $1", unit_id)
        async for row in cursor:
            alias = Stored(row["kind"], row["value"], row["lead_id"])
            if is_stale(alias):
                stale.append(alias)
        current: list[Stored] = []
        keys = sorted({(s.kind, normalise(s.kind, s.value)) for s in stale})
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            rows = await conn.fetch(
                """SELECT a.kind, a.value, a.lead_id
                   FROM aliases AS a
                   JOIN unnest($2::text[], $3::text[]) AS k(kind, value) USING (kind, value)
                   WHERE a.unit_id = $1""",
                unit_id,
                [kind for kind, _ in batch],
                [value for _, value in batch],
            )
            current += [Stored(r["kind"], r["value"], r["lead_id"]) for r in rows]
    return collisions(unit_id, stale, current)
