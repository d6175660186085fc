"""Which triggers fire for a batch of scored records: plain functions over plain values.

A trigger fires for a record when the record moved the lead's score from below the
trigger's threshold to at or above it (``score_before < threshold <= score_after``) and,
if the trigger names an event type, the record's type is that one. Records flagged
``skip_triggers`` (imports that asked for silence) or ``replay`` (rescoring) never fire.
A fire-once trigger fires at most once per lead, ever; a fire-always trigger once per
crossing. Either fires at most once per (trigger, event), however often the record comes.

Most records cross nothing, so that path is a few comparisons: a record whose score did
not go up is dropped at once, and the others meet their unit's thresholds through one
binary search, not a loop over every trigger.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import NamedTuple

from schemas import ScoredEvent


@dataclass(frozen=True, slots=True)
class Trigger:
    """An active milestone trigger, as the consumer needs it."""

    trigger_id: str
    unit_id: str
    score_threshold: int
    event_type: str | None
    """Fires only for records of this event type; None: for any."""
    once: bool
    """Fire mode ``once`` (at most one firing per lead) rather than ``always``."""


class Crossing(NamedTuple):
    """A record that took a lead's score across a trigger's threshold."""

    trigger: Trigger
    record: ScoredEvent


class _UnitTriggers(NamedTuple):
    thresholds: list[int]
    """Ascending; ``triggers[i]`` has ``thresholds[i]``."""
    triggers: list[Trigger]


class TriggerIndex:
    """The active triggers of some units, sorted by threshold for a binary search."""

    def __init__(self, triggers: Iterable[Trigger]) -> None:
        by_unit: dict[str, list[Trigger]] = {}
        for trigger in triggers:
            by_unit.setdefault(trigger.unit_id, []).append(trigger)
        self._units: Mapping[str, _UnitTriggers] = {
            unit: _UnitTriggers([t.score_threshold for t in ts], ts)
            for unit, ts in (
                (unit, sorted(ts, key=lambda t: (t.score_threshold, t.trigger_id)))
                for unit, ts in by_unit.items()
            )
        }

    def __bool__(self) -> bool:
        return bool(self._units)

    def crossings(self, records: Iterable[ScoredEvent]) -> list[Crossing]:
        """Every (trigger, record) whose threshold the record crossed upwards, in record order.

        Flagged records are left out; fire-once and de-duplication are :func:`select`'s job.
        """
        units = self._units
        found: list[Crossing] = []
        for record in records:
            before = record.score_before
            after = record.score_after
            if after <= before or record.skip_triggers or record.replay:
                continue
            unit = units.get(record.unit_id)
            if unit is None:
                continue
            thresholds = unit.thresholds
            # thresholds[low:high] are exactly those with before < threshold <= after.
            low = bisect_right(thresholds, before)
            if low == len(thresholds) or thresholds[low] > after:
                continue
            high = bisect_right(thresholds, after, low)
            for trigger in unit.triggers[low:high]:
                if trigger.event_type is None or trigger.event_type == record.event_type:
                    found.append(Crossing(trigger, record))
        return found


def once_pairs(crossings: Iterable[Crossing]) -> set[tuple[str, str]]:
    """The (trigger_id, lead_id) pairs of fire-once crossings: what to look up as fired."""
    return {(c.trigger.trigger_id, c.record.lead_id) for c in crossings if c.trigger.once}


def select(crossings: Sequence[Crossing], already_fired: Set[tuple[str, str]]) -> list[Crossing]:
    """The crossings that fire, given the (trigger_id, lead_id) pairs that fired before.

    Keeps the first crossing of each (trigger, event), and of a fire-once trigger only the
    first crossing of each lead that never fired it (earlier in the batch included).
    """
    fired = set(already_fired)
    seen_events: set[tuple[str, str]] = set()
    chosen: list[Crossing] = []
    for crossing in crossings:
        trigger_id = crossing.trigger.trigger_id
        event_key = (trigger_id, crossing.record.event_id)
        if event_key in seen_events:
            continue
        if crossing.trigger.once:
            lead_key = (trigger_id, crossing.record.lead_id)
            if lead_key in fired:
                continue
            fired.add(lead_key)
        seen_events.add(event_key)
        chosen.append(crossing)
    return chosen


def decide(
    records: Iterable[ScoredEvent],
    triggers: Iterable[Trigger],
    already_fired: Set[tuple[str, str]],
) -> list[Crossing]:
    """The firings a batch of records causes: :meth:`TriggerIndex.crossings`, then :func:`select`.

    ``already_fired`` holds the (trigger_id, lead_id) pairs with a firing from before the batch.
    """
    return select(TriggerIndex(triggers).crossings(records), already_fired)
