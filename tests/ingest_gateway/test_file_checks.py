"""The whole-file checks an import runs before parsing (csv_rows.FileChecks): everything
that can refuse a file after its header, so that parsing may overlap publishing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_gateway.csv_rows import CsvRecords, FileChecks, FileRejected, TooManyRows


def checked(data: bytes, *, chunk: int = 7, max_rows: int | None = None) -> FileChecks:
    checks = FileChecks(max_rows=max_rows)
    for i in range(0, len(data), chunk):
        checks.feed(data[i : i + chunk])
    checks.close()
    if checks.may_have_too_many_rows:
        checks.count_rows(data[i : i + chunk] for i in range(0, len(data), chunk))
    return checks


def parsed(data: bytes, *, chunk: int = 7, max_rows: int | None = None) -> int:
    reader = CsvRecords(max_rows=max_rows)
    rows = 0
    for i in range(0, len(data), chunk):
        rows += len(reader.feed(data[i : i + chunk]))
    return rows + len(reader.close())


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"lead_id,event_type\n" + b"a,b\n" * 50 + b"a,\xff\n", "not_utf8"),
        (b"lead_id,event_type\n" + b"a,b\n" * 50 + b"a,\xc3", "not_utf8"),  # cut off at the end
        (b"lead_id,event_type\n" + b"a,b\n" * 50 + b"a,\x00\n", "not_text"),
    ],
)
def test_a_bad_byte_anywhere_refuses_the_file_as_parsing_would(data: bytes, code: str) -> None:
    with pytest.raises(FileRejected) as by_checks:
        checked(data)
    with pytest.raises(FileRejected) as by_parser:
        parsed(data)
    assert by_checks.value.code == by_parser.value.code == code
    assert by_checks.value.detail == by_parser.value.detail


def test_rows_are_counted_by_lines_and_by_records_only_past_the_limit() -> None:
    data = b"lead_id,event_type\n" + b"a,b\n" * 9  # 10 rows
    assert not checked(data, max_rows=10).may_have_too_many_rows
    with pytest.raises(TooManyRows):
        checked(data + b"a,b\n", max_rows=10)
    # More lines than rows allowed, but as many records: a quoted field holds line breaks.
    quoted = b"lead_id,event_type\n" + b'a,"b\nc"\n' * 9
    checks = checked(quoted, max_rows=10)
    assert checks.may_have_too_many_rows  # so the records were counted, and passed
    assert parsed(quoted, max_rows=10) == 10


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"")),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=12),
)
def test_a_file_the_checks_pass_is_never_refused_by_the_parser_but_for_its_header(
    data: bytes, chunk: int, max_rows: int
) -> None:
    """Whatever the bytes: if the checks pass them, parsing them raises nothing but about
    the header (which imports meet before any event); if the checks refuse them, so does
    parsing."""
    refused: str | None = None
    try:
        checked(data, chunk=chunk, max_rows=max_rows)
    except FileRejected as exc:
        refused = exc.code
    if refused is None:
        parsed(data, chunk=chunk, max_rows=max_rows)  # raises nothing
        return
    with pytest.raises(FileRejected) as caught:
        parsed(data, chunk=chunk, max_rows=max_rows)
    assert caught.value.code == refused
