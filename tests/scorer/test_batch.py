"""What a batch writes and publishes, as a pure function of its events and the leads held."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import Alias, LeadEvent
from scorer.batch import score_batch
from scorer.resolution import AliasConflict, Resolved
from scorer.scoring import RuleBook, Ruleset
from scorer.state import Lead
from scorer.store import EVENT_COLUMNS, AliasClaim, ConflictRow

UNIT = "ou_1"
BOOK = RuleBook.of([Ruleset("rs_a", UNIT, {"page_view": 2, "demo_request": 10})])
OCCURRED_AT, SCORE_AFTER, METADATA = (
    EVENT_COLUMNS.index(c) for c in ("occurred_at", "score_after", "metadata")
)


def _event(n: int, event_type: str, day: int, **extra: object) -> LeadEvent:
    return LeadEvent(
        event_id=f"e{n}",
        unit_id=UNIT,
        event_type=event_type,
        timestamp=datetime(2025, 6, day, tzinfo=UTC),
        source="import",
        **extra,  # type: ignore[arg-type]
    )


def _day(day: int) -> datetime:
    return datetime(2025, 6, day, tzinfo=UTC)


def test_a_batch_runs_each_leads_score_and_changes_the_lead_held() -> None:
    events = [
        _event(1, "page_view", 3, import_id="imp_1", row=2),
        _event(2, "demo_request", 1, import_id="imp_1", row=3),
        _event(3, "webinar", 5, skip_triggers=True),
        _event(4, "page_view", 2),
    ]
    resolved = [
        Resolved("ld_a", False, (Alias("email", "a@b.c"),)),
        Resolved("ld_a", False, (), (AliasConflict(Alias("cookie", "c"), "ld_b"),)),
        Resolved("ld_a", False),
        None,
    ]
    # The lead had 100 points from 7 events, 60 of them from rs_a.
    lead = Lead(100, 7, _day(2), _day(4), {"rs_a": 60, "rs_old": 40}, stored=True)
    changes = score_batch(events, resolved, BOOK, {(UNIT, "ld_a"): lead})

    assert changes.unresolved == [3]
    assert [(s.score_before, s.points, s.score_after) for s in changes.scored] == [
        (100, 2, 102),
        (102, 10, 112),
        (112, 0, 112),
    ]
    assert [r[SCORE_AFTER] for r in changes.rows] == [102, 112, 112]
    assert lead == Lead(112, 10, _day(1), _day(5), {"rs_a": 72, "rs_old": 40}, stored=True)
    assert changes.leads == {(UNIT, "ld_a"): 7}  # written once, checked against 7 events
    assert list(changes.ruleset_scores) == [(UNIT, "ld_a", "rs_a")]
    assert changes.claims == [AliasClaim(UNIT, "email", "a@b.c", "ld_a", "e1")]
    assert changes.conflicts == [ConflictRow(UNIT, "e2", "cookie", "c", "ld_b", "ld_a")]
    assert changes.imports == {(UNIT, "imp_1"): 2}
    scored = changes.scored
    assert [s.lead_created for s in scored] == [False, False, False]
    assert scored[0].aliases_attached == (Alias("email", "a@b.c"),)
    assert (scored[0].import_id, scored[0].row, scored[2].skip_triggers) == ("imp_1", 2, True)
    assert all(not s.replay and s.source == "import" for s in scored)


def test_first_event_of_a_lead_not_stored_creates_it() -> None:
    events = [_event(1, "page_view", 1, lead_id="ld_x"), _event(2, "page_view", 2)]
    lead = Lead()
    changes = score_batch(events, [Resolved("ld_x", False)] * 2, BOOK, {(UNIT, "ld_x"): lead})
    assert [s.lead_created for s in changes.scored] == [True, False]
    assert [s.score_before for s in changes.scored] == [0, 2]
    assert changes.leads == {(UNIT, "ld_x"): None}  # inserted, not updated
    assert (lead.score, lead.event_count, lead.first_event_at) == (4, 2, _day(1))


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
    changes = score_batch([event], [Resolved("ld_x", False)], BOOK, {(UNIT, "ld_x"): Lead()})
    assert changes.rows[0][METADATA] == '{"url":"/pricing","n":1}'
    assert changes.rows[0][OCCURRED_AT] == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert len(changes.rows[0]) == len(EVENT_COLUMNS)
