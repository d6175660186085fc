"""Which triggers fire: the pure core, without Kafka or Postgres."""

from __future__ import annotations

from schemas import ScoredEvent
from tests.trigger_service.helpers import path_of, scored
from trigger_service.decisions import Trigger, TriggerIndex, decide, once_pairs, select

UNIT = "ou_a"


def trigger(
    threshold: int,
    *,
    once: bool = False,
    event_type: str | None = None,
    trigger_id: str | None = None,
    unit_id: str = UNIT,
) -> Trigger:
    return Trigger(trigger_id or f"trg_{threshold}", unit_id, threshold, event_type, once)


def fired(
    records: list[ScoredEvent],
    triggers: list[Trigger],
    already: set[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """(trigger_id, event_id) of every firing."""
    return [
        (c.trigger.trigger_id, c.record.event_id)
        for c in decide(records, triggers, already or set())
    ]


def test_fires_when_the_score_moves_from_below_to_at_or_above_the_threshold() -> None:
    t = [trigger(50)]
    assert fired([scored(UNIT, "ld", 40, 50, event_id="e1")], t) == [("trg_50", "e1")]
    assert fired([scored(UNIT, "ld", 49, 70, event_id="e2")], t) == [("trg_50", "e2")]
    assert fired([scored(UNIT, "ld", 50, 60)], t) == []  # was at the threshold already
    assert fired([scored(UNIT, "ld", 10, 49)], t) == []  # still below
    assert fired([scored(UNIT, "ld", 60, 40)], t) == []  # going down crosses nothing
    assert fired([scored(UNIT, "ld", 40, 40)], t) == []


def test_one_record_can_cross_several_thresholds() -> None:
    t = [trigger(10), trigger(20), trigger(30), trigger(40)]
    crossed = fired([scored(UNIT, "ld", 15, 35, event_id="e")], t)
    assert crossed == [("trg_20", "e"), ("trg_30", "e")]


def test_negative_thresholds_work_like_any_other() -> None:
    t = [trigger(-5)]
    assert fired([scored(UNIT, "ld", -10, -5, event_id="e")], t) == [("trg_-5", "e")]
    assert fired([scored(UNIT, "ld", 0, 3)], t) == []


def test_flagged_records_never_fire() -> None:
    t = [trigger(50)]
    assert fired([scored(UNIT, "ld", 0, 100, skip_triggers=True)], t) == []
    assert fired([scored(UNIT, "ld", 0, 100, replay=True)], t) == []


def test_event_type_filter() -> None:
    t = [trigger(50, event_type="demo_request")]
    assert fired([scored(UNIT, "ld", 0, 60, event_type="page_view")], t) == []
    assert fired([scored(UNIT, "ld", 0, 60, event_type="demo_request", event_id="e")], t) == [
        ("trg_50", "e")
    ]


def test_triggers_of_another_unit_do_not_fire() -> None:
    t = [trigger(50, unit_id="ou_b")]
    assert fired([scored(UNIT, "ld", 0, 60)], t) == []


def test_always_fires_on_every_crossing_once_only_on_the_first() -> None:
    # Up through 50, down through negative points, up again, twice.
    records = path_of(UNIT, "ld", [30, 55, 20, 60, 45, 70])
    always = fired(records, [trigger(50, trigger_id="always")])
    once = fired(records, [trigger(50, once=True, trigger_id="once")])
    assert [e for _, e in always] == [records[1].event_id, records[3].event_id, records[5].event_id]
    assert [e for _, e in once] == [records[1].event_id]


def test_once_is_per_lead_and_remembers_earlier_batches() -> None:
    t = [trigger(50, once=True)]
    records = [scored(UNIT, "ld_1", 0, 60), scored(UNIT, "ld_2", 0, 60)]
    assert len(fired(records, t)) == 2
    assert fired(records, t, already={("trg_50", "ld_1")}) == [("trg_50", records[1].event_id)]


def test_a_record_seen_twice_fires_once() -> None:
    record = scored(UNIT, "ld", 0, 60, event_id="e")
    assert fired([record, record], [trigger(50)]) == [("trg_50", "e")]


def test_once_pairs_names_only_fire_once_crossings() -> None:
    records = [scored(UNIT, "ld_1", 0, 60)]
    index = TriggerIndex([trigger(50, once=True, trigger_id="o"), trigger(40, trigger_id="a")])
    crossings = index.crossings(records)
    assert once_pairs(crossings) == {("o", "ld_1")}
    assert len(select(crossings, {("o", "ld_1")})) == 1


def test_no_triggers_no_work() -> None:
    assert not TriggerIndex([])
    assert TriggerIndex([]).crossings([scored(UNIT, "ld", 0, 60)]) == []
