"""Scoring as a pure function (DESIGN.md decision 7)."""

from __future__ import annotations

from datetime import UTC, datetime

from scorer.scoring import RuleBook, Ruleset, Score

UNIT = "ou_1"
JUNE = datetime(2025, 6, 1, tzinfo=UTC)
JULY = datetime(2025, 7, 1, tzinfo=UTC)


def test_points_sum_over_rulesets_and_are_kept_per_ruleset() -> None:
    book = RuleBook.of(
        [
            Ruleset("rs_a", UNIT, {"page_view": 1, "demo_request": 50}),
            Ruleset("rs_b", UNIT, {"page_view": 2, "unsubscribe": -20}),
        ]
    )
    assert book.score(UNIT, "page_view", JUNE) == Score(3, (("rs_a", 1), ("rs_b", 2)))
    assert book.score(UNIT, "demo_request", JUNE) == Score(50, (("rs_a", 50),))
    assert book.score(UNIT, "unsubscribe", JUNE) == Score(-20, (("rs_b", -20),))


def test_unknown_event_type_scores_zero() -> None:
    book = RuleBook.of([Ruleset("rs_a", UNIT, {"page_view": 1})])
    assert book.score(UNIT, "webinar_attend", JUNE) == Score(0)
    assert RuleBook().score(UNIT, "page_view", JUNE) == Score(0)


def test_validity_dates_apply_to_the_events_own_timestamp() -> None:
    book = RuleBook.of(
        [
            Ruleset("rs_june", UNIT, {"page_view": 5}, starts_at=JUNE, ends_at=JULY),
            Ruleset("rs_from_july", UNIT, {"page_view": 7}, starts_at=JULY),
            Ruleset("rs_until_june", UNIT, {"page_view": 11}, ends_at=JUNE),
        ]
    )
    assert book.score(UNIT, "page_view", datetime(2025, 5, 31, tzinfo=UTC)).total == 11
    assert book.score(UNIT, "page_view", JUNE).total == 5  # starts_at is included
    assert book.score(UNIT, "page_view", JULY).total == 7  # ends_at is excluded
    assert book.score(UNIT, "page_view", datetime(2026, 1, 1, tzinfo=UTC)).total == 7


def test_rulesets_belong_to_their_unit() -> None:
    book = RuleBook.of([Ruleset("rs_a", "ou_other", {"page_view": 1})])
    assert book.score(UNIT, "page_view", JUNE) == Score(0)
    assert book.score("ou_other", "page_view", JUNE) == Score(1, (("rs_a", 1),))
