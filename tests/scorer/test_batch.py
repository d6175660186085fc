"""What a batch writes and publishes, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import Alias, LeadEvent
from scorer.batch import plan
from scorer.resolution import AliasConflict, Resolved
from scorer.scoring import RuleBook, Ruleset
from scorer.store import AliasClaim, ConflictRow, LeadDelta, LeadTotal

UNIT = "ou_1"
BOOK = RuleBook.of([Ruleset("rs_a", UNIT, {"page_view": 2, "demo_request": 10})])


def _event(n: int, event_type: str, day: int, **extra: object) -> LeadEvent:
    return LeadEvent(
        event_id=f"e{n}",
        unit_id=UNIT,
        event_type=event_type,
        timestamp=datetime(2025, 6, day, tzinfo=UTC),
        source="import",
        **extra,  # type: ignore[arg-type]
    )


def test_plan_sums_per_lead_and_finish_gives_running_scores() -> None:
    events = [
        _event(1, "page_view", 3, import_id="imp_1", row=2),
        _event(2, "demo_request", 1, import_id="imp_1", row=3),
        _event(3, "webinar", 5, skip_triggers=True),
        _event(4, "page_view", 2),
    ]
    lead_a = Resolved("ld_a", True, (Alias("email", "a@b.c"),))
    resolved = [
        lead_a,
        Resolved("ld_a", False, (), (AliasConflict(Alias("cookie", "c"), "ld_b"),)),
        Resolved("ld_a", False),
        None,
    ]
    changes = plan(events, resolved, BOOK)

    assert changes.unresolved == [3]
    assert changes.lead_deltas == {
        (UNIT, "ld_a"): LeadDelta(
            UNIT, "ld_a", 12, 3, datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 5, tzinfo=UTC)
        )
    }
    assert changes.ruleset_deltas == {(UNIT, "ld_a", "rs_a"): 12}
    assert changes.claims == [AliasClaim(UNIT, "email", "a@b.c", "ld_a", "e1")]
    assert changes.conflicts == [ConflictRow(UNIT, "e2", "cookie", "c", "ld_b", "ld_a")]
    assert changes.imports == {(UNIT, "imp_1"): 2}

    # The lead had 100 before the batch: the database answers 112 after it.
    rows, scored = changes.finish({(UNIT, "ld_a"): LeadTotal(112, created=False)})
    assert [(s.score_before, s.points, s.score_after) for s in scored] == [
        (100, 2, 102),
        (102, 10, 112),
        (112, 0, 112),
    ]
    assert [r.score_after for r in rows] == [102, 112, 112]
    assert [s.lead_created for s in scored] == [False, False, False]
    assert scored[0].aliases_attached == (Alias("email", "a@b.c"),)
    assert (scored[0].import_id, scored[0].row, scored[2].skip_triggers) == ("imp_1", 2, True)
    assert all(not s.replay and s.source == "import" for s in scored)


def test_first_event_of_a_new_lead_says_it_created_it() -> None:
    events = [_event(1, "page_view", 1, lead_id="ld_x"), _event(2, "page_view", 2)]
    changes = plan(events, [Resolved("ld_x", False), Resolved("ld_x", False)], BOOK)
    _, scored = changes.finish({(UNIT, "ld_x"): LeadTotal(4, created=True)})
    assert [s.lead_created for s in scored] == [True, False]
    assert [s.score_before for s in scored] == [0, 2]


def test_metadata_is_stored_as_json_and_naive_timestamps_are_utc() -> None:
    event = LeadEvent(
        event_id="e1",
        unit_id=UNIT,
        lead_id="ld_x",
        event_type="page_view",
        timestamp=datetime(2025, 6, 1, 12),
        source="api",
        metadata={"url": "/pricing", "n": 1},
    )
    changes = plan([event], [Resolved("ld_x", False)], BOOK)
    rows, _ = changes.finish({(UNIT, "ld_x"): LeadTotal(2, created=True)})
    assert rows[0].metadata == '{"url":"/pricing","n":1}'
    assert rows[0].occurred_at == datetime(2025, 6, 1, 12, tzinfo=UTC)
