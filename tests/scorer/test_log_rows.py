"""The topics' records as staging rows: pure functions, no Kafka, no Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import Alias, ConflictingAlias, LeadEvent, ScoredEvent, encode
from scorer.log_rows import ScoreIds, Units, stage_facts, stage_scored
from scorer.rebuild import ATTACHED_COLUMNS, CONFLICT_COLUMNS, FACT_COLUMNS, SCORED_COLUMNS
from scorer.scoring import RuleBook, Ruleset
from tests.scorer.helpers import LogRecord

JUNE = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
BOOK = RuleBook.of(
    [
        Ruleset("rs_a", "ou_1", {"page_view": 2, "demo_request": 10}),
        Ruleset("rs_b", "ou_1", {"page_view": 1}, starts_at=datetime(2025, 6, 1, tzinfo=UTC)),
    ]
)


def scored(event_id: str, unit_id: str = "ou_1", **fields: object) -> ScoredEvent:
    values: dict[str, object] = {
        "event_id": event_id,
        "unit_id": unit_id,
        "lead_id": "ld_a",
        "event_type": "page_view",
        "timestamp": JUNE,
        "points": 2,
        "score_before": 0,
        "score_after": 2,
        "skip_triggers": False,
        "source": "api",
        **fields,
    }
    return ScoredEvent(**values)  # type: ignore[arg-type]


def record(
    value: ScoredEvent | LeadEvent | bytes, offset: int = 0, key: bytes | None = None
) -> LogRecord:
    data = value if isinstance(value, bytes) else encode(value)
    unit = getattr(value, "unit_id", "ou_1")
    return LogRecord(1, offset, 1_750_000_000_000 + offset, key or f"{unit}:x".encode(), data)


def test_a_scored_record_becomes_one_row_with_its_new_points_numbered() -> None:
    scores = ScoreIds()
    staged = stage_scored(
        [
            record(scored("e1"), 10),
            record(scored("e2", event_type="demo_request", points=10), 11),
            record(scored("e3", event_type="webinar"), 12),
            record(scored("e4", timestamp=datetime(2025, 5, 1, tzinfo=UTC)), 13),
        ],
        Units(["ou_1"]),
        BOOK,
        scores,
    )
    assert [len(row) for row in staged.scored] == [len(SCORED_COLUMNS)] * 4
    first = dict(zip(SCORED_COLUMNS, staged.scored[0], strict=True))
    assert (first["part"], first["off"], first["ts_ms"]) == (1, 10, 1_750_000_000_010)
    assert (first["points_was"], first["score_before_was"], first["score_after_was"]) == (2, 0, 2)
    assert first["conflicts_known"] is False  # a record without alias_conflicts did not say
    totals = {number: total for number, total in scores.totals}
    by_event = [totals[row[-1]] for row in staged.scored]
    assert by_event == [3, 10, 0, 2]  # rs_b counts from June on; webinar scores nothing
    assert sorted(scores.parts) == sorted(
        [(1, "rs_a", 2), (1, "rs_b", 1), (2, "rs_a", 10), (3, "rs_a", 2)]
    )


def test_decisions_become_rows_tied_to_the_record_that_took_them() -> None:
    conflict = ConflictingAlias(Alias("email", "x@y.z"), "ld_b")
    staged = stage_scored(
        [
            record(
                scored(
                    "e1",
                    lead_created=True,
                    aliases_attached=(Alias("email", "a@b.c"), Alias("cookie", "c1")),
                    alias_conflicts=(conflict,),
                ),
                7,
            )
        ],
        Units(["ou_1"]),
        BOOK,
        ScoreIds(),
    )
    assert staged.attached == [
        ("ou_1", "e1", 1, 7, 0, "email", "a@b.c"),
        ("ou_1", "e1", 1, 7, 1, "cookie", "c1"),
    ]
    assert staged.conflicts == [("ou_1", "e1", 1, 7, 0, "email", "x@y.z", "ld_b")]
    assert all(len(row) == len(ATTACHED_COLUMNS) for row in staged.attached)
    assert all(len(row) == len(CONFLICT_COLUMNS) for row in staged.conflicts)
    row = dict(zip(SCORED_COLUMNS, staged.scored[0], strict=True))
    assert row["lead_created"] is True
    assert row["conflicts_known"] is True


def test_decisions_taken_under_an_older_normalisation_are_staged_as_recorded() -> None:
    """A replay keeps the identities of the log: values are not normalised again."""
    old = Alias("email", "ja\u200bne@acme.com")  # e-mails kept zero-width spaces once
    staged = stage_scored(
        [
            record(
                scored(
                    "e1",
                    aliases_attached=(old, Alias("phone", "+")),
                    alias_conflicts=(ConflictingAlias(old, "ld_b"),),
                ),
                7,
            )
        ],
        Units(["ou_1"]),
        BOOK,
        ScoreIds(),
    )
    assert [row[5:] for row in staged.attached] == [
        ("email", "ja\u200bne@acme.com"),
        ("phone", "+"),
    ]
    assert [row[5:] for row in staged.conflicts] == [("email", "ja\u200bne@acme.com", "ld_b")]


def test_other_units_and_undecodable_records_are_left_out() -> None:
    staged = stage_scored(
        [
            record(scored("e1")),
            record(scored("e2", unit_id="ou_2")),  # another unit's key: not even decoded
            record(b"not json", key=b"ou_1:x"),
        ],
        Units(["ou_1"], only="ou_1"),
        BOOK,
        ScoreIds(),
    )
    assert [row[1] for row in staged.scored] == ["e1"]
    assert staged.undecodable == 1
    every = stage_scored(
        [record(scored("e1")), record(scored("e2", unit_id="ou_2")), record(scored("e3", "ou_9"))],
        Units(["ou_1", "ou_2"]),
        BOOK,
        ScoreIds(),
    )
    assert [row[1] for row in every.scored] == ["e1", "e2"]  # ou_9 does not exist


def test_events_keyed_by_unit_or_by_the_old_key_are_the_units_and_no_other() -> None:
    units = Units(["ou_1"], only="ou_1")
    assert units.may_hold(b"ou_1")  # the events topic's key
    assert units.may_hold(b"ou_1:email=a@b.c")  # an events record keyed before the unit key
    assert units.may_hold(b"ou_1:ld_a")  # a scored record's key
    assert not units.may_hold(b"ou_10")
    assert not units.may_hold(b"ou_2:ld_a")


def test_facts_keep_the_metadata_as_the_json_text_it_came_as() -> None:
    event = LeadEvent(
        event_id="e1",
        unit_id="ou_1",
        lead_id="ld_a",
        event_type="page_view",
        timestamp=JUNE,
        source="api",
        metadata={"url": "/pricing", "utm": {"source": "news"}},
    )
    bare = LeadEvent(
        event_id="e2", unit_id="ou_1", event_type="page_view", timestamp=JUNE, source="api"
    )
    rows, undecodable = stage_facts(
        [record(event, 3), record(bare, 4), record(b"{", 5)], Units(["ou_1"])
    )
    assert rows == [
        ("ou_1", "e1", 1, 3, '{"url":"/pricing","utm":{"source":"news"}}'),
        ("ou_1", "e2", 1, 4, "{}"),
    ]
    assert all(len(row) == len(FACT_COLUMNS) for row in rows)
    assert undecodable == 1


def test_the_scorer_records_its_conflicts_in_the_scored_record() -> None:
    from scorer.batch import score_batch
    from scorer.resolution import AliasConflict, Resolved
    from scorer.state import Lead

    event = LeadEvent(
        event_id="e1", unit_id="ou_1", lead_id="ld_a", event_type="page_view",
        timestamp=JUNE, source="api",
    )  # fmt: skip
    resolved = Resolved("ld_a", False, (), (AliasConflict(Alias("cookie", "c"), "ld_b"),))
    records = score_batch([event], [resolved], BOOK, {("ou_1", "ld_a"): Lead()}).scored
    assert records[0].alias_conflicts == (ConflictingAlias(Alias("cookie", "c"), "ld_b"),)
    plain = score_batch([event], [Resolved("ld_a", False)], BOOK, {("ou_1", "ld_a"): Lead()})
    assert plain.scored[0].alias_conflicts == ()


def test_a_score_number_is_the_books_score_at_every_date_bounds_included() -> None:
    book = RuleBook.of(
        [
            Ruleset("rs_a", "ou_1", {"page_view": 2}),
            Ruleset(
                "rs_b",
                "ou_1",
                {"page_view": 1},
                starts_at=datetime(2025, 6, 1, tzinfo=UTC),
                ends_at=datetime(2025, 9, 1, tzinfo=UTC),
            ),
            Ruleset("rs_c", "ou_1", {"page_view": 5}, ends_at=datetime(2025, 7, 1, tzinfo=UTC)),
        ]
    )
    dates = [
        datetime(2025, 5, 31, tzinfo=UTC),
        datetime(2025, 6, 1, tzinfo=UTC),
        datetime(2025, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 7, 1, tzinfo=UTC),
        datetime(2025, 9, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    ]
    numbers, expected = ScoreIds(), ScoreIds()
    for date in dates * 2:
        for event_type in ("page_view", "demo_request"):
            assert numbers.of_event(book, "ou_1", event_type, date) == expected.of(
                book.score("ou_1", event_type, date)
            )
    assert numbers.totals == expected.totals
    assert sorted(t for _, t in numbers.totals) == [0, 2, 3, 7, 8]
