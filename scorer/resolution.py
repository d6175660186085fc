"""Identity resolution: which lead each event is about (DESIGN.md decision 6).

Pure functions over plain values. Given a batch's events in order and the owners known
for their aliases, :func:`resolve` decides for each event:

- an event with a ``lead_id`` goes to that lead (created if never seen, with that id) and
  attaches its free aliases to it;
- an event with only aliases goes to the lead owning its highest-priority owned alias, or,
  if none is owned, to a new lead (``ld_`` + a sortable id) that owns all of them;
  the caller chooses how new ids are made (the scorer derives them from the event, so
  that reprocessing a batch mints the same ids);
- an alias owned by another lead is never moved: the event records a conflict instead.

Decisions made for earlier events of the batch count for later ones, exactly as if the
events had been applied one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from schemas import ALIAS_KINDS, Alias, LeadEvent
from schemas.aliases import normalise
from schemas.ids import sortable_id

AliasKey = tuple[str, str, str]
"""(unit_id, kind, normalised value): an alias is unique within its unit."""

_RANK = {kind: rank for rank, kind in enumerate(ALIAS_KINDS)}


def new_lead_id(position: int) -> str:
    """A new lead's id: ``ld_`` + a sortable random id."""
    return sortable_id("ld_")


class Identity(NamedTuple):
    """Who an event says it is about: an explicit lead id and/or its normalised aliases."""

    unit_id: str
    lead_id: str | None
    aliases: tuple[Alias, ...]
    """Normalised, highest priority first, without repeats or empty values."""

    @classmethod
    def of(cls, event: LeadEvent) -> Identity:
        lead_id = event.lead_id.strip() if event.lead_id else None
        return cls(event.unit_id, lead_id or None, _normalised_aliases(event.aliases))


def identities_of(events: Iterable[LeadEvent]) -> list[Identity]:
    """``[Identity.of(e) for e in events]``, several times faster for a batch."""
    new = tuple.__new__
    found: list[Identity] = []
    append = found.append
    for event in events:
        lead_id = event.lead_id
        lead_id = (lead_id.strip() or None) if lead_id else None
        aliases = event.aliases
        if aliases:
            normalised = _normalised.get(aliases)
            if normalised is None:
                if len(_normalised) >= _NORMALISED_SIZE:
                    _normalised.clear()
                normalised = _normalised[aliases] = _normalised_aliases(aliases)
            aliases = normalised
        append(new(Identity, (event.unit_id, lead_id, aliases)))
    return found


_normalised: dict[tuple[Alias, ...], tuple[Alias, ...]] = {}
"""The normalised form of aliases seen recently: a person's cookie or e-mail recurs."""
_NORMALISED_SIZE = 100_000


def _normalised_aliases(aliases: tuple[Alias, ...]) -> tuple[Alias, ...]:
    if not aliases:
        return ()
    found: dict[tuple[str, str], Alias] = {}
    for alias in aliases:
        value = normalise(alias.kind, alias.value)
        if value and (alias.kind, value) not in found:
            found[(alias.kind, value)] = Alias(alias.kind, value)
    if len(found) < 2:
        return tuple(found.values())
    return tuple(sorted(found.values(), key=lambda a: _RANK[a.kind]))


@dataclass(frozen=True, slots=True)
class AliasConflict:
    """An event named ``alias``, which ``owner_lead_id`` owns; the alias stayed there."""

    alias: Alias
    owner_lead_id: str


class Resolved(NamedTuple):
    """The lead an event goes to, and what resolving it changed."""

    lead_id: str
    new_lead: bool
    """The lead was created here, from the event's aliases."""
    attached: tuple[Alias, ...] = ()
    """Aliases that belonged to no lead and now belong to this one."""
    conflicts: tuple[AliasConflict, ...] = ()


def alias_keys(identities: Iterable[Identity]) -> set[AliasKey]:
    """Every alias the batch names: the owners to look up before resolving."""
    return {(i.unit_id, a.kind, a.value) for i in identities for a in i.aliases}


def resolve(
    identities: Sequence[Identity],
    owners: MutableMapping[AliasKey, str],
    *,
    mint: Callable[[int], str] = new_lead_id,
) -> list[Resolved | None]:
    """The lead of each identity, in order; None for one with neither lead id nor alias.

    ``owners`` maps the aliases already owned (at least those of :func:`alias_keys`) to
    their lead, and receives the aliases attached here (the scorer passes the owners it
    holds in memory). ``mint(position)`` makes the id of a new lead for the identity at
    ``position``.
    """
    owned = owners
    resolved: list[Resolved | None] = []
    plain: dict[str, Resolved] = {}
    """Resolved(lead_id, False) of each lead id named alone (immutable, so shared)."""
    for position, identity in enumerate(identities):
        unit_id, lead_id, aliases = identity
        if not aliases and lead_id is not None:  # the most common case: nothing to decide
            same = plain.get(lead_id)
            if same is None:
                same = plain[lead_id] = Resolved(lead_id, False)
            resolved.append(same)
            continue
        new_lead = False
        if lead_id is None:
            lead_id = next(
                (
                    owner
                    for a in aliases
                    if (owner := owned.get((unit_id, a.kind, a.value))) is not None
                ),
                None,
            )
            if lead_id is None:
                if not aliases:
                    resolved.append(None)
                    continue
                lead_id, new_lead = mint(position), True
        attached: list[Alias] = []
        conflicts: list[AliasConflict] = []
        for alias in aliases:
            key = (unit_id, alias.kind, alias.value)
            owner = owned.get(key)
            if owner is None:
                owned[key] = lead_id
                attached.append(alias)
            elif owner != lead_id:
                conflicts.append(AliasConflict(alias, owner))
        resolved.append(Resolved(lead_id, new_lead, tuple(attached), tuple(conflicts)))
    return resolved
