"""The one validation of CSV rows and JSON events, and RFC 3339 timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_gateway.events import (
    EVENT_TYPE_REQUIRED,
    IDENTITY_REQUIRED,
    MAX_EVENT_TYPE,
    MAX_IDENTIFIER,
    CheckedEvent,
    check_event,
    parse_timestamp,
    shown,
)
from schemas import Alias

NOW = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)


def check(
    lead_id: str = "ld_1",
    aliases: list[tuple[str, str]] | None = None,
    event_type: str = "open",
    timestamp: str = "",
) -> CheckedEvent | str:
    return check_event(lead_id, aliases or [], event_type, timestamp, default_time=NOW)  # type: ignore[arg-type]


def test_an_acceptable_event() -> None:
    assert check(" ld_1 ", [("email", " a@b.c "), ("phone", "  ")], " open ") == CheckedEvent(
        "ld_1", (Alias("email", "a@b.c"),), "open", NOW
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"lead_id": " "}, IDENTITY_REQUIRED),
        ({"lead_id": "", "aliases": [("email", "  ")]}, IDENTITY_REQUIRED),
        ({"event_type": "  "}, EVENT_TYPE_REQUIRED),
        ({"lead_id": "x" * (MAX_IDENTIFIER + 1)}, "lead_id: longer than 512 characters"),
        ({"aliases": [("cookie", "c" * 513)]}, "cookie: longer than 512 characters"),
        ({"event_type": "e" * (MAX_EVENT_TYPE + 1)}, "event_type: longer than 128 characters"),
        ({"timestamp": "yesterday"}, "timestamp: not RFC 3339: 'yesterday'"),
    ],
)
def test_what_is_refused_and_how_it_is_said(kwargs: dict[str, object], error: str) -> None:
    assert check(**kwargs) == error  # type: ignore[arg-type]


def test_the_first_problem_is_reported() -> None:
    assert check(lead_id="", event_type="", timestamp="bad") == IDENTITY_REQUIRED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-15T10:30:00Z", datetime(2025, 6, 15, 10, 30, tzinfo=UTC)),
        ("2025-06-15t10:30:00z", datetime(2025, 6, 15, 10, 30, tzinfo=UTC)),
        ("2025-06-15 10:30:00Z", datetime(2025, 6, 15, 10, 30, tzinfo=UTC)),
        ("2025-06-15T12:30:00+02:00", datetime(2025, 6, 15, 10, 30, tzinfo=UTC)),
        ("2025-06-15T05:00:00-05:30", datetime(2025, 6, 15, 10, 30, tzinfo=UTC)),
        ("2025-06-15T10:30:00-00:00", datetime(2025, 6, 15, 10, 30, tzinfo=UTC)),
        ("2025-06-15T10:30:00.5Z", datetime(2025, 6, 15, 10, 30, 0, 500_000, tzinfo=UTC)),
        ("2025-06-15T10:30:00.123456789Z", datetime(2025, 6, 15, 10, 30, 0, 123456, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2025-01-01T00:30:00+01:00", datetime(2024, 12, 31, 23, 30, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_in_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert isinstance(parsed, datetime)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2025-13-01",
        "2025-06-15",
        "2025-02-29T00:00:00Z",
        "2025-06-15T24:00:00Z",
        "2025-06-15T23:59:60Z",
        "2025-06-15T10:30Z",
        "2025-06-15T10:30:00+2:00",
        "2025-06-15T10:30:00+0200",
        "2025-06-15T10:30:00+24:00",
        "2025-06-15T10:30:00.Z",
        "20250615T103000Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "\uff12\uff10\uff12\uff15-06-15T10:30:00Z",
        "2025-06-15T10:30:00Z trailing",
    ],
)
def test_not_rfc3339(text: str) -> None:
    assert parse_timestamp(text) == f"timestamp: not RFC 3339: {shown(text)}"


def test_a_timestamp_without_offset_is_told_to_add_one() -> None:
    assert parse_timestamp("2025-06-15T10:30:00") == (
        "timestamp: no UTC offset (add Z or one like +02:00): '2025-06-15T10:30:00'"
    )


offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(timezones=offsets))
def test_any_aware_datetime_written_in_rfc3339_reads_back_in_utc(moment: datetime) -> None:
    text = moment.isoformat()
    parsed = parse_timestamp(text)
    if isinstance(parsed, str):  # only at the very ends of the calendar, once in UTC
        assert moment.year in (1, 9999)
        return
    assert parsed == moment
    assert parsed.tzinfo is UTC


def test_long_values_are_shortened_in_messages() -> None:
    assert shown("x" * 50) == repr("x" * 40) + "..."
