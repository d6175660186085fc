"""The pure CSV → events core of POST /import, over every case the issue names."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_gateway.csv_rows import (
    CsvRecords,
    FileRejected,
    Header,
    ImportRows,
    Record,
    RowError,
    column_name,
)
from ingest_gateway.events import IDENTITY_REQUIRED
from schemas import Alias, LeadEvent

RECEIVED = datetime(2025, 8, 1, 12, 0, tzinfo=UTC)


def rows_of(
    *chunks: bytes, skip_triggers: bool = False
) -> tuple[ImportRows, list[LeadEvent | RowError]]:
    rows = ImportRows(
        unit_id="ou_1",
        import_id="imp_1",
        skip_triggers=skip_triggers,
        received_at=RECEIVED,
        event_id=lambda row: f"ev-{row}",
    )
    out: list[LeadEvent | RowError] = []
    for chunk in chunks:
        out += rows.feed(chunk)
    out += rows.close()
    return rows, out


def parse(data: bytes) -> list[LeadEvent | RowError]:
    return rows_of(data)[1]


def rejected(*chunks: bytes) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        rows_of(*chunks)
    return caught.value


def summary(items: list[LeadEvent | RowError]) -> list[tuple[int | None, str]]:
    """(row, lead or error) of each item, to compare briefly."""
    return [
        (i.row, i.error) if isinstance(i, RowError) else (i.row, i.lead_id or str(i.aliases))
        for i in items
    ]


# -- the page's examples ------------------------------------------------------------------


def test_the_pages_lead_id_example() -> None:
    rows, out = rows_of(
        b"lead_id,event_type,timestamp\n"
        b"ld_abc123,page_view,2025-06-15T10:30:00Z\n"
        b"ld_abc123,email_open,2025-06-16T14:00:00Z\n"
        b"ld_def456,demo_request,2025-06-20T09:00:00Z\n"
    )
    assert out == [
        LeadEvent(
            event_id="ev-2",
            unit_id="ou_1",
            lead_id="ld_abc123",
            event_type="page_view",
            timestamp=datetime(2025, 6, 15, 10, 30, tzinfo=UTC),
            source="import",
            import_id="imp_1",
            row=2,
        ),
        LeadEvent(
            event_id="ev-3",
            unit_id="ou_1",
            lead_id="ld_abc123",
            event_type="email_open",
            timestamp=datetime(2025, 6, 16, 14, 0, tzinfo=UTC),
            source="import",
            import_id="imp_1",
            row=3,
        ),
        LeadEvent(
            event_id="ev-4",
            unit_id="ou_1",
            lead_id="ld_def456",
            event_type="demo_request",
            timestamp=datetime(2025, 6, 20, 9, 0, tzinfo=UTC),
            source="import",
            import_id="imp_1",
            row=4,
        ),
    ]
    assert rows.header is not None
    assert rows.header.ignored_columns == ()


def test_the_pages_email_example() -> None:
    out = parse(
        b"email,event_type,timestamp\n"
        b"jane@acme.com,webinar_attend,2025-07-01T11:00:00Z\n"
        b"bob@example.com,form_submit,2025-07-02T15:30:00Z\n"
    )
    assert [(e.lead_id, e.aliases, e.event_type) for e in out if isinstance(e, LeadEvent)] == [
        (None, (Alias("email", "jane@acme.com"),), "webinar_attend"),
        (None, (Alias("email", "bob@example.com"),), "form_submit"),
    ]


def test_every_event_carries_source_skip_triggers_import_and_row() -> None:
    _, out = rows_of(b"lead_id,event_type\nld_1,open\n", skip_triggers=True)
    [event] = out
    assert isinstance(event, LeadEvent)
    assert (event.source, event.skip_triggers, event.import_id, event.row) == (
        "import",
        True,
        "imp_1",
        2,
    )


# -- the header --------------------------------------------------------------------------


def test_header_names_match_without_case_or_surrounding_spaces_in_any_order() -> None:
    out = parse(b" TimeStamp ,Event_Type, EMAIL , Lead_ID\n2025-06-15T10:30:00Z,open,a@b.c,ld_1\n")
    [event] = out
    assert isinstance(event, LeadEvent)
    assert (event.lead_id, event.aliases, event.event_type) == (
        "ld_1",
        (Alias("email", "a@b.c"),),
        "open",
    )
    assert event.timestamp == datetime(2025, 6, 15, 10, 30, tzinfo=UTC)


def test_unknown_columns_are_ignored_and_named_as_written() -> None:
    rows, out = rows_of(b"lead_id,Notes,event_type, Campaign Name ,,\nld_1,hello,open,spring,,\n")
    assert rows.header is not None
    assert rows.header.ignored_columns == ("Notes", "Campaign Name")
    assert summary(out) == [(2, "ld_1")]


def test_alias_columns_alone_are_enough_and_go_in_priority_order() -> None:
    out = parse(
        b"cookie,social,phone,email,external_id,event_type\n"
        b" ck , @jane , +1 555 , Jane@Acme.com , crm-7 ,open\n"
    )
    [event] = out
    assert isinstance(event, LeadEvent)
    assert event.lead_id is None
    # Values as sent, trimmed: the scorer normalises them.
    assert event.aliases == (
        Alias("external_id", "crm-7"),
        Alias("email", "Jane@Acme.com"),
        Alias("phone", "+1 555"),
        Alias("social", "@jane"),
        Alias("cookie", "ck"),
    )


def test_a_header_without_event_type_refuses_the_file() -> None:
    error = rejected(b"lead_id,timestamp\nld_1,2025-06-15T10:30:00Z\n")
    assert error.code == "missing_column"
    assert "event_type" in error.detail


def test_a_header_without_lead_id_or_alias_refuses_the_file() -> None:
    error = rejected(b"event_type,timestamp,notes\nopen,2025-06-15T10:30:00Z,x\n")
    assert error.code == "missing_column"
    assert "lead_id or an alias column" in error.detail


def test_a_file_without_header_is_refused_for_its_missing_columns() -> None:
    assert rejected(b"ld_1,page_view,2025-06-15T10:30:00Z\n").code == "missing_column"


@pytest.mark.parametrize(
    "header",
    [b"lead_id,event_type,lead_id", b"email,event_type, Email ", b"lead_id,event_type,x,X"],
)
def test_a_repeated_header_name_refuses_the_file(header: bytes) -> None:
    error = rejected(header + b"\nld_1,open,x\n")
    assert error.code == "duplicate_column"
    assert "twice" in error.detail


def test_the_duplicate_message_names_the_columns_as_a_spreadsheet_does() -> None:
    assert "columns A and C" in rejected(b"lead_id,event_type,lead_id\n").detail


def test_column_names() -> None:
    assert [column_name(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "A",
        "B",
        "Z",
        "AA",
        "AB",
        "AZ",
        "BA",
        "ZZ",
        "AAA",
    ]


def test_header_read_directly() -> None:
    header = Header.read(1, ["event_type", "", "email", "lead_id"])
    assert (header.event_type, header.lead_id, header.timestamp, header.aliases) == (
        0,
        3,
        None,
        (("email", 2),),
    )


def test_a_header_only_file_imports_nothing_and_is_no_error() -> None:
    rows, out = rows_of(b"lead_id,event_type\n")
    assert out == []
    assert rows.header is not None


# -- empty, not UTF-8, not text ----------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"\xef\xbb\xbf", b"\n\n\r\n", b"   \n", b",,,\n\n", b"\xef\xbb\xbf\r\n"]
)
def test_an_empty_file_is_refused(data: bytes) -> None:
    assert rejected(data).code == "empty_file"


def test_a_latin1_file_is_refused_with_where_the_bad_byte_is() -> None:
    error = rejected(b"lead_id,event_type\nld_1,open\nld_\xe9,open\n")
    assert error.code == "not_utf8"
    assert "byte 0xE9 at offset 32 (line 3)" in error.detail
    assert "CSV UTF-8" in error.detail


def test_a_bad_byte_in_a_later_chunk_is_found_at_its_place() -> None:
    head = b"lead_id,event_type\n" + b"ld_1,open\n" * 1000
    error = rejected(head, b"ld_2,op\xffen\n")
    assert f"byte 0xFF at offset {len(head) + 7} (line 1002)" in error.detail


def test_a_character_cut_off_at_the_end_is_not_utf8() -> None:
    error = rejected(b"lead_id,event_type\nld_1,caf\xc3")
    assert error.code == "not_utf8"
    assert "byte 0xC3 at offset 27 (line 2)" in error.detail


def test_a_utf16_file_is_not_utf8() -> None:
    assert rejected("lead_id,event_type\n".encode("utf-16")).code == "not_utf8"


def test_a_nul_byte_means_not_text() -> None:
    error = rejected(b"lead_id,event_type\nld_1,op\x00en\n")
    assert error.code == "not_text"
    assert "line 2" in error.detail


def test_a_multibyte_character_split_between_chunks_is_whole() -> None:
    data = "lead_id,event_type\nld_é,öffnen\n".encode()
    cut = data.index(b"\xc3") + 1
    out = parse_chunks([data[:cut], data[cut:]])
    assert [(e.lead_id, e.event_type) for e in out if isinstance(e, LeadEvent)] == [
        ("ld_é", "öffnen")
    ]


def parse_chunks(chunks: list[bytes]) -> list[LeadEvent | RowError]:
    return rows_of(*chunks)[1]


# -- what spreadsheets write --------------------------------------------------------------


@pytest.mark.parametrize("split", [1, 2, 3, 7])
def test_a_byte_order_mark_is_skipped_even_when_split(split: int) -> None:
    data = b"\xef\xbb\xbflead_id,event_type\r\nld_1,open\r\n"
    chunks = [data[i : i + split] for i in range(0, len(data), split)]
    assert summary(parse_chunks(chunks)) == [(2, "ld_1")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_ends_lf_crlf_and_cr(newline: bytes) -> None:
    data = newline.join([b"lead_id,event_type", b"ld_1,open", b"", b"ld_2,click", b""])
    assert summary(parse(data)) == [(2, "ld_1"), (4, "ld_2")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    assert summary(parse_chunks([b"lead_id,event_type\r", b"\nld_1,open\r", b"\nld_2,x\r\n"])) == [
        (2, "ld_1"),
        (3, "ld_2"),
    ]


def test_quoted_fields_hold_commas_quotes_and_line_breaks() -> None:
    out = parse(
        b'lead_id,event_type,notes\n"ld,1","say ""hi""","two\nlines"\n'
        b'"ld_2",open,"a\r\nb"\nld_3,x,\n'
    )
    assert summary(out) == [(2, "ld,1"), (3, "ld_2"), (4, "ld_3")]
    assert isinstance(out[0], LeadEvent)
    assert out[0].event_type == 'say "hi"'


def test_a_multiline_record_is_one_row_and_later_rows_keep_spreadsheet_numbers() -> None:
    out = parse(b'lead_id,event_type,notes\nld_1,open,"first\nsecond\nthird"\nld_2,open,\n,open,\n')
    assert summary(out) == [
        (2, "ld_1"),
        (3, "ld_2"),
        (
            4,
            IDENTITY_REQUIRED,
        ),
    ]


@pytest.mark.parametrize("size", [1, 2, 5, 13])
def test_a_quoted_field_may_span_chunks(size: int) -> None:
    data = b'lead_id,event_type,notes\nld_1,open,"a ""quoted"", multi\r\nline\nnote"\nld_2,x,y\n'
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert summary(parse_chunks(chunks)) == [(2, "ld_1"), (3, "ld_2")]


def test_blank_lines_count_as_rows_but_are_neither_events_nor_errors() -> None:
    out = parse(b"\nlead_id,event_type\n\nld_1,open\n   \n,,,\nld_2,open\n\n")
    assert summary(out) == [(4, "ld_1"), (7, "ld_2")]


def test_trailing_empty_columns_and_short_rows() -> None:
    out = parse(b"lead_id,event_type,timestamp,,\nld_1,open,,,,,\nld_2\nld_3,open\n")
    assert summary(out) == [(2, "ld_1"), (3, "event_type: required"), (4, "ld_3")]


def test_a_stray_quote_inside_an_unquoted_field_is_a_character() -> None:
    out = parse(b"lead_id,event_type,notes\nld_1,open,5'7\"\nld_2,open,x\n")
    assert summary(out) == [(2, "ld_1"), (3, "ld_2")]


def test_text_after_a_closing_quote_is_a_row_error_and_the_next_rows_go_on() -> None:
    out = parse(b'lead_id,event_type\n"ld_1"x,open\nld_2,open\n')
    assert summary(out) == [
        (2, 'not valid CSV: text after a closing quote (write a quote inside a field as "")'),
        (3, "ld_2"),
    ]


def test_a_quote_never_closed_is_an_error_of_its_row() -> None:
    out = parse(b'lead_id,event_type\nld_1,open\nld_2,"open\n')
    assert summary(out) == [
        (2, "ld_1"),
        (3, "not valid CSV: a quoted field is not closed before the end of the file"),
    ]


def test_a_malformed_header_refuses_the_file() -> None:
    error = rejected(b'"lead_id"x,event_type\nld_1,open\n')
    assert error.code == "invalid_header"
    assert error.detail.startswith("The header (row 1) is not valid CSV")


# -- per-row errors -----------------------------------------------------------------------


def test_bad_rows_are_counted_with_their_reason_and_do_not_stop_the_others() -> None:
    out = parse(
        b"lead_id,email,event_type,timestamp\n"
        b"ld_1,,open,2025-06-15T10:30:00Z\n"
        b",,open,2025-06-15T10:30:00Z\n"
        b"ld_3,,  ,2025-06-15T10:30:00Z\n"
        b"ld_4,,open,2025-13-01\n"
        b"ld_5,,open,2025-06-15T10:30:00\n"
        b",a@b.c,open,\n"
    )
    assert summary(out) == [
        (2, "ld_1"),
        (
            3,
            IDENTITY_REQUIRED,
        ),
        (4, "event_type: required"),
        (5, "timestamp: not RFC 3339: '2025-13-01'"),
        (6, "timestamp: no UTC offset (add Z or one like +02:00): '2025-06-15T10:30:00'"),
        (7, "(Alias(kind='email', value='a@b.c'),)"),
    ]


def test_a_row_whose_identities_all_normalise_to_nothing_is_a_row_error() -> None:
    """So ``applied`` reaches ``imported``: the scorer would resolve no lead for it."""
    out = parse(
        b"email,phone,cookie,event_type\n"
        b",n/a,,call\n"
        b"\xe2\x80\x8b,+,,call\n"
        b",n/a,c1,call\n"
        b",+1 555,,call\n"
    )
    assert summary(out) == [
        (2, "phone: 'n/a' names no one (it has no digits 0-9); " + _NEEDS_IDENTITY),
        (
            3,
            "email: '\\u200b' names no one (nothing is left once spaces and invisible "
            "characters are removed); " + _NEEDS_IDENTITY,
        ),
        (4, "(Alias(kind='cookie', value='c1'),)"),
        (5, "(Alias(kind='phone', value='+1 555'),)"),
    ]


def test_a_control_character_in_a_value_the_row_imports_is_a_row_error() -> None:
    out = parse(
        b"lead_id,event_type,note\n"
        b"ld_\x01,open,\n"
        b"ld_2,op\x1ben,\n"
        b"ld_3,open,\x01 is in a column not imported\n"
    )
    assert summary(out) == [
        (2, "lead_id: holds a control character (U+0001) at position 4; remove it"),
        (3, "event_type: holds a control character (U+001B) at position 3; remove it"),
        (4, "ld_3"),
    ]


_NEEDS_IDENTITY = "an event needs lead_id or an alias that identifies its lead"


def test_timestamps_are_normalised_to_utc_and_default_to_the_import_time() -> None:
    out = parse(
        b"lead_id,event_type,timestamp\n"
        b"ld_1,a,2025-06-15T12:30:00+02:00\n"
        b"ld_2,a,2025-06-15t10:30:00.250z\n"
        b"ld_3,a,\n"
    )
    times = [e.timestamp for e in out if isinstance(e, LeadEvent)]
    assert times == [
        datetime(2025, 6, 15, 10, 30, tzinfo=UTC),
        datetime(2025, 6, 15, 10, 30, 0, 250_000, tzinfo=UTC),
        RECEIVED,
    ]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert times[0].tzinfo is UTC


def test_values_are_trimmed_and_an_empty_lead_id_counts_as_absent() -> None:
    [event] = parse(b"lead_id,email,event_type\n  ,  a@b.c ,  open  \n")
    assert isinstance(event, LeadEvent)
    assert (event.lead_id, event.aliases, event.event_type) == (
        None,
        (Alias("email", "a@b.c"),),
        "open",
    )


def test_the_event_id_comes_from_the_row_number() -> None:
    out = parse(b"lead_id,event_type\nld_1,a\n\nld_2,b\n")
    assert [e.event_id for e in out if isinstance(e, LeadEvent)] == ["ev-2", "ev-4"]


# -- the record splitter, against a one-shot parse of the same text ------------------------

cell = st.text(
    alphabet=st.sampled_from(
        ["a", "b", "é", "€", " ", ",", '"', "\n", "\r", "\t", "\u2028", "\x0c"]
    ),
    max_size=8,
)
table = st.lists(st.lists(cell, max_size=5), min_size=1, max_size=20)


def records(chunks: list[bytes]) -> list[Record]:
    reader = CsvRecords()
    out: list[Record] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out + reader.close()


@settings(max_examples=300, deadline=None)
@given(
    table,
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_chunked_parsing_equals_parsing_the_whole_text(
    rows: list[list[str]], newline: str, bom: bool, cuts: list[int]
) -> None:
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator=newline).writerows(rows)
    data = ("\ufeff" if bom else "").encode() + text.getvalue().encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]

    # Every line end, inside quotes too, reads as "\n"; then a one-shot csv parse is the oracle.
    whole = text.getvalue().replace("\r\n", "\n").replace("\r", "\n")
    expected = list(csv.reader(io.StringIO(whole, newline="\n"), strict=True))
    assert records(chunks) == list(enumerate(expected, start=1))
    assert [fields for _, fields in records([data])] == expected


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(["a", "é", ",", '"', "\n", "\r", " "]), max_size=60),
    st.lists(st.integers(min_value=0, max_value=100), max_size=8),
)
def test_any_text_however_chunked_reads_as_in_one_piece(text: str, cuts: list[int]) -> None:
    """Stray and unclosed quotes included: chunk boundaries never change what is read."""
    data = text.encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert records(chunks) == records([data])


def test_an_unclosed_quote_is_one_row_error_and_reading_goes_on() -> None:
    """The csv module's field size limit ends it; what waits for a closing quote stays small."""
    line = b"ld_1,page_view,2025-06-15T10:30:00Z\n"
    data = b'lead_id,event_type,timestamp\nld_0,"open\n' + line * 20_000
    reader = CsvRecords()
    out: list[Record] = []
    for i in range(0, len(data), 65536):
        out += reader.feed(data[i : i + 65536])
        assert len(reader._text) < 2 * csv.field_size_limit()
    out += reader.close()
    errors = [r for r in out if isinstance(r[1], str)]
    assert errors == [
        (2, f"not valid CSV: a field over {csv.field_size_limit()} characters (an unclosed quote?)")
    ]
    assert out[-1] == (len(out), ["ld_1", "page_view", "2025-06-15T10:30:00Z"])
