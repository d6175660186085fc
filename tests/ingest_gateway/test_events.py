"""The one validation of CSV rows and JSON events, and RFC 3339 timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_gateway.events import (
    EVENT_TYPE_REQUIRED,
    IDENTITY_REQUIRED,
    MAX_ALIASES,
    MAX_EVENT_TYPE,
    MAX_IDENTIFIER,
    CheckedEvent,
    check_event,
    metadata_problem,
    parse_timestamp,
    shown,
)
from ingest_gateway.ingest import METADATA_LIMIT
from schemas import ALIAS_KINDS, Alias, AliasKind, ConflictingAlias, LeadEvent, ScoredEvent, encode
from scorer.resolution import identities_of, resolve

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


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"lead_id": "ld\x001"}, "lead_id: holds a control character (U+0000) at position 3"),
        ({"aliases": [("email", "a\x1b@b.c")]}, "email: holds a control character (U+001B)"),
        ({"aliases": [("cookie", "c\x85d")]}, "cookie: holds a control character (U+0085)"),
        ({"event_type": "op\ten"}, "event_type: holds a control character (U+0009)"),
    ],
)
def test_a_control_character_in_an_identity_or_event_type_is_refused(
    kwargs: dict[str, object], error: str
) -> None:
    result = check(**kwargs)  # type: ignore[arg-type]
    assert isinstance(result, str)
    assert result.startswith(error)


def test_control_characters_at_the_ends_are_trimmed_away_like_spaces() -> None:
    assert check(lead_id="\tld_1\n") == CheckedEvent("ld_1", (), "open", NOW)


@pytest.mark.parametrize(
    ("aliases", "error"),
    [
        ([("phone", "n/a")], "phone: 'n/a' names no one (it has no digits 0-9)"),
        ([("phone", "+")], "phone: '+' names no one (it has no digits 0-9)"),
        (
            [("email", "\u200b"), ("phone", "²")],
            "email: '\\u200b' names no one (nothing is left once spaces and invisible "
            "characters are removed)",
        ),
    ],
)
def test_an_event_whose_aliases_all_normalise_to_nothing_is_refused(
    aliases: list[tuple[str, str]], error: str
) -> None:
    result = check(lead_id="", aliases=aliases)
    assert result == f"{error}; an event needs lead_id or an alias that identifies its lead"


def test_an_alias_that_names_no_one_is_dropped_beside_one_that_does() -> None:
    checked = check(lead_id="", aliases=[("phone", "n/a"), ("cookie", "c1")])
    assert isinstance(checked, CheckedEvent)
    assert checked.aliases == (Alias("cookie", "c1"),)
    assert check(aliases=[("phone", "n/a")]) == CheckedEvent("ld_1", (), "open", NOW)


def test_an_alias_longer_than_the_limit_once_normalised_is_refused() -> None:
    value = "\ufdfa" * 30 + "@x.com"  # NFKC writes that ligature as 18 characters
    assert len(value) <= MAX_IDENTIFIER
    assert check(aliases=[("email", value)]) == (
        "email: longer than 512 characters once normalised"
    )


_IDENTITY_TEXT = st.text(
    alphabet=st.sampled_from("aZ09 +-@.\u200b\u00ad\u00a0²٣\uff11ß\u0301\x00\x01\t"), max_size=8
)


@given(
    _IDENTITY_TEXT,
    st.lists(st.tuples(st.sampled_from(ALIAS_KINDS), _IDENTITY_TEXT), max_size=4),
)
def test_an_accepted_event_is_one_the_scorer_resolves(
    lead_id: str, aliases: list[tuple[AliasKind, str]]
) -> None:
    """The promise behind ``applied`` reaching ``imported``: nothing accepted is unresolvable."""
    checked = check_event(lead_id, aliases, "open", "", default_time=NOW)
    if isinstance(checked, str):
        return
    event = LeadEvent(
        event_id="ev_1",
        unit_id="ou_1",
        lead_id=checked.lead_id,
        aliases=checked.aliases,
        event_type=checked.event_type,
        timestamp=checked.timestamp,
        source="api",
    )
    [identity] = identities_of([event])
    assert identity.lead_id or identity.aliases
    assert resolve([identity], {}) != [None]


def test_metadata_keys_and_strings_are_checked_at_any_depth_naming_where() -> None:
    assert metadata_problem({"note": "line\nnext\ttab", "n": 1, "x": None, "l": [1.5]}) is None
    assert metadata_problem({"a": {"b": ["ok", "no\x00"]}}) == (
        "metadata.a.b[1]: holds a control character (U+0000) at position 3; remove it"
    )
    assert metadata_problem({"a": [{"k\x01": 1}]}) == (
        "metadata.a[0]: the key 'k\\x01' holds a control character (U+0001) at position 2; "
        "remove it"
    )
    assert metadata_problem({"first": "\x02", "second": "\x03"}) is not None
    assert metadata_problem({"first": "\x02", "second": "\x03"}).startswith("metadata.first")  # type: ignore[union-attr]


def test_the_largest_acceptable_event_and_its_scored_record_fit_their_topics() -> None:
    """Limits chosen so that a record is never over Kafka's 1 MiB: here is the worst case."""
    widest = "\U0001f600"  # 4 bytes of UTF-8 in JSON: no character takes more
    identifier = widest * MAX_IDENTIFIER
    aliases = tuple(Alias(ALIAS_KINDS[i % 5], identifier) for i in range(MAX_ALIASES))
    metadata = {"k": widest * ((METADATA_LIMIT - 10) // 4)}
    assert len(msgspec.json.encode(metadata)) <= METADATA_LIMIT
    event = LeadEvent(
        event_id="ev_" + "x" * 40,
        unit_id="ou_" + "x" * 40,
        lead_id=identifier,
        aliases=aliases,
        event_type=widest * MAX_EVENT_TYPE,
        timestamp=NOW,
        source="import",
        import_id="imp_" + "x" * 40,
        row=2**31,
        metadata=metadata,
    )
    scored = ScoredEvent(
        event_id=event.event_id,
        unit_id=event.unit_id,
        lead_id=identifier,
        event_type=event.event_type,
        timestamp=NOW,
        points=-(2**63),
        score_before=-(2**63),
        score_after=-(2**63),
        skip_triggers=True,
        source="import",
        import_id=event.import_id,
        row=event.row,
        lead_created=True,
        aliases_attached=aliases,  # more than any event: an alias attaches or conflicts
        alias_conflicts=tuple(ConflictingAlias(a, identifier) for a in aliases),
    )
    kafka_limit = 1024 * 1024  # aiokafka's max_request_size and the broker's message.max.bytes
    assert len(encode(event)) < kafka_limit // 4
    assert len(encode(scored)) < kafka_limit // 4
