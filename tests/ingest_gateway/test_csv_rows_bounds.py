"""The CSV parser under hostile input: linear work whatever the shape, and its limits.

The timing tests compare the CPU time of n and 8n bytes of one shape (a ratio, not a
wall-clock bound): linear work is about 8 times as long, the old re-parse of an open record
from its start with every chunk was about 64 times.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import itertools
import resource
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_gateway import csv_rows
from ingest_gateway.csv_rows import (
    HEADER_COLUMNS_LIMIT,
    HEADER_SIZE_LIMIT,
    LINE_LIMIT,
    ROW_LIMIT,
    CsvRecords,
    FileRejected,
    ImportRows,
    Record,
    TooManyRows,
)
from ingest_gateway.uploads import FILE_LIMIT


def records(chunks: list[bytes], *, max_rows: int | None = None) -> list[Record]:
    reader = CsvRecords(max_rows=max_rows)
    out: list[Record] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out + reader.close()


def count_records(chunks: list[bytes]) -> int:
    """The records of the chunks, counted and dropped: what the parser costs, without the
    cost of holding every record at once."""
    reader = CsvRecords()
    out = 0
    for chunk in chunks:
        out += len(reader.feed(chunk))
    return out + len(reader.close())


def import_rows(chunks: list[bytes]) -> int:
    rows = ImportRows(
        unit_id="ou_1",
        import_id="imp_1",
        skip_triggers=False,
        received_at=datetime(2025, 8, 1, tzinfo=UTC),
        event_id=lambda row: f"ev-{row}",
    )
    out = 0
    for chunk in chunks:
        out += len(rows.feed(chunk))
    return out + len(rows.close())


# -- the chunked parse against the csv module, on whole valid files -----------------------

long_cell = st.text(
    alphabet=st.sampled_from(["a", "é", "𝄞", " ", ",", '"', "\n", "\r"]), max_size=200
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(long_cell, min_size=1, max_size=6), min_size=1, max_size=30),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.lists(st.integers(min_value=0, max_value=20_000), max_size=40),
)
def test_any_chunking_of_a_valid_file_reads_as_the_csv_module_reads_it_whole(
    rows: list[list[str]], newline: str, cuts: list[int]
) -> None:
    """Long quoted fields across many chunks included: the records that wait get parsed again
    only once more text arrived, and still come out as the csv module reads the file."""
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator=newline).writerows(rows)
    data = text.getvalue().encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]

    whole = text.getvalue().replace("\r\n", "\n").replace("\r", "\n")
    expected = list(csv.reader(io.StringIO(whole, newline="\n"), strict=True))
    assert records(chunks) == list(enumerate(expected, start=1))


def test_an_open_record_read_in_one_byte_chunks_reads_as_in_one_piece() -> None:
    data = b'lead_id,event_type,notes\nld_1,open,"' + b"line\n" * 2000 + b'"\nld_2,x,y\n'
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert records(chunks) == records([data])
    assert [row for row, _ in records(chunks)] == [1, 2, 3]


# -- linear whatever the shape -------------------------------------------------------------


def user_seconds() -> float:
    """CPU time in user space. The kernel's time is left out: it pages in again the memory
    the allocator gave back between runs, which grows with the size of the largest object
    (a line of 960 KB is one string), not with the parser's work."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def cpu_seconds(parse: Callable[[list[bytes]], object], *runs: tuple[bytes, int]) -> list[float]:
    """The user CPU time of parsing each ``(file, times)`` that many times over, in chunks of
    64 bytes: the least of 5 tries, as timeit takes it (other processes on the machine only
    ever add time), the tries interleaved so that a change of load weighs on each alike.

    Parsing n bytes 8 times against 8n bytes once keeps both sides long enough (tens of
    milliseconds) for user time, which the kernel counts in ticks of a few milliseconds.
    The cyclic garbage collector is off meanwhile, as in timeit: its passes grow with every
    object alive in the process (a whole test session's), not with the parser's work.
    """
    chunked = [([data[i : i + 64] for i in range(0, len(data), 64)], times) for data, times in runs]
    best = [float("inf")] * len(runs)
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            for index, (chunks, times) in enumerate(chunked):
                started = user_seconds()
                for _ in range(times):
                    with contextlib.suppress(FileRejected):  # a refusal costs the reading
                        parse(chunks)
                best[index] = min(best[index], user_seconds() - started)
    finally:
        gc.enable()
    return best


def open_record(size: int) -> bytes:
    """One record that goes on to the end: quoted fields, each holding a line end."""
    field = b'"' + b"x" * 200 + b'\n",'
    return b"lead_id,event_type,notes\nld_1,open," + field * (size // len(field))


def unclosed_quote(size: int) -> bytes:
    """A quote never closed: one field to the end (the test lifts the csv field limit)."""
    return b'lead_id,event_type,notes\nld_1,open,"' + b"ld_2,open,x\n" * (size // 12)


def tiny_rows(size: int) -> bytes:
    return b"lead_id,event_type\n" + b"a,b\n" * (size // 4)


def long_header(size: int) -> bytes:
    """A header of unknown names that goes on for the whole file, on one line."""
    name = b",an unknown column of the header"
    return b"lead_id,event_type" + name * (size // len(name)) + b"\nld_1,open\n"


def long_line(size: int) -> bytes:
    """A line that does not end until the end of the file (one long field)."""
    return b"lead_id,event_type,notes\nld_1,open," + b"a" * size + b"\n"


@pytest.fixture
def no_field_limit() -> Iterator[None]:
    """The csv module's field limit lifted, so that n and 8n bytes of an unclosed quote are
    parsed alike (one growing field) rather than ended at 131,072 characters."""
    limit = csv.field_size_limit(2**30)
    yield
    csv.field_size_limit(limit)


@pytest.mark.parametrize(
    ("shape", "parse"),
    [
        (open_record, count_records),
        (unclosed_quote, count_records),
        (tiny_rows, count_records),
        (long_header, import_rows),
        (long_line, count_records),
    ],
    ids=["open record", "unclosed quote", "tiny rows", "long header", "long line"],
)
@pytest.mark.usefixtures("no_field_limit")
def test_8n_bytes_of_a_hostile_shape_cost_about_what_n_bytes_8_times_do(
    shape: Callable[[int], bytes], parse: Callable[[list[bytes]], object]
) -> None:
    """Linear is 8 times, so 8n bytes once cost what n bytes 8 times do (the next test
    counts it exactly); the bound of 1.5 leaves room for the noise of a loaded machine. The
    re-parse of an open record from its start with every chunk made it 8."""
    n = 120 * 1024  # big enough to outweigh fixed costs; 8n is within the line limit
    small, large = cpu_seconds(parse, (shape(n), 8), (shape(8 * n), 1))
    assert large < 1.5 * small, f"{large:.3f} s for 8n bytes against {small:.3f} s for 8 x n"


@pytest.mark.parametrize("chunk", [1, 64, 1024, 65536])
@pytest.mark.parametrize("shape", [open_record, unclosed_quote, tiny_rows, long_line])
def test_the_csv_module_reads_each_character_at_most_three_times(
    monkeypatch: pytest.MonkeyPatch, shape: Callable[[int], bytes], chunk: int
) -> None:
    """What waits for a record's end is parsed again only once as much text again arrived:
    the text handed to the csv module adds up to less than 3 times the file."""
    handed: list[int] = []

    class Counted(io.StringIO):
        def __init__(self, text: str, newline: str) -> None:
            handed.append(len(text))
            super().__init__(text, newline=newline)

    monkeypatch.setattr(csv_rows.io, "StringIO", Counted)
    data = shape(100_000 if chunk > 1 else 10_000)
    count_records([data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert sum(handed) < 3 * len(data)


# -- limits ---------------------------------------------------------------------------------


def test_the_row_limit_lets_every_file_of_rows_with_timestamps_through() -> None:
    """The shortest row with a timestamp is 25 bytes: a 10 MB file of them is within."""
    shortest = b"1,a,2025-06-15T10:30:00Z\n"
    assert len(shortest) == 25
    header = b"lead_id,event_type,timestamp\n"
    assert 1 + (FILE_LIMIT - len(header)) // len(shortest) <= ROW_LIMIT


def test_more_rows_than_the_limit_refuse_the_file_naming_the_limit() -> None:
    data = b"lead_id,event_type\n" + b"a,b\n" * 9
    assert len(records([data], max_rows=10)) == 10
    with pytest.raises(TooManyRows) as caught:
        records([data + b"\n"], max_rows=10)  # a blank row counts too
    assert caught.value.code == "too_many_rows"
    assert "more than 10 rows" in caught.value.detail


def test_rows_beyond_the_limit_are_refused_as_they_arrive() -> None:
    reader = CsvRecords(max_rows=100)
    for _ in range(9):
        reader.feed(b"a,b\n" * 10)
    with pytest.raises(TooManyRows):
        reader.feed(b"a,b\n" * 11)
    assert reader.rows == 90


def test_the_default_row_limit_is_the_modules() -> None:
    assert CsvRecords().max_rows == ROW_LIMIT


@pytest.mark.parametrize("chunk", [7, 1000, 10**9])
def test_a_line_over_the_limit_refuses_the_file_at_its_line(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(csv_rows, "LINE_LIMIT", 50)
    ok = b"lead_id,event_type\n" + b"x" * 50 + b"\n"
    assert records([ok[i : i + chunk] for i in range(0, len(ok), chunk)])
    data = ok + b"ld_1,open\n" + b"y" * 51 + b"\nld_2,open\n"
    with pytest.raises(FileRejected) as caught:
        records([data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert caught.value.code == "line_too_long"
    assert caught.value.detail.startswith("Line 4 of the file is over 50 characters")


def test_the_line_limit_is_a_mebibyte() -> None:
    assert LINE_LIMIT == 1024 * 1024
    with pytest.raises(FileRejected, match="Line 2 of the file is over 1,048,576 characters"):
        records([b"lead_id,event_type\n", b"a" * (LINE_LIMIT + 1)])


def test_a_header_with_too_many_columns_refuses_the_file() -> None:
    names = b"lead_id,event_type" + b"," * (HEADER_COLUMNS_LIMIT - 2)
    assert import_rows([names + b"\n"]) == 0  # 1,000 columns (empty ones included) are fine
    with pytest.raises(FileRejected) as caught:
        import_rows([names + b",\nld_1,open\n"])
    assert caught.value.code == "header_too_large"
    assert caught.value.detail.startswith("The header (row 1) has 1,001 columns")
    assert "at most 1,000 columns and 65,536 characters" in caught.value.detail


def test_a_header_of_too_many_characters_refuses_the_file() -> None:
    name = b"n" * (HEADER_SIZE_LIMIT - len(b"lead_id,event_type,"))
    assert import_rows([b"lead_id,event_type," + name + b"\n"]) == 0
    with pytest.raises(FileRejected) as caught:
        import_rows([b"\n\nlead_id,event_type," + name + b"n\nld_1,open\n"])
    assert caught.value.code == "header_too_large"
    assert "(row 3) has 3 columns and 65,537 characters" in caught.value.detail
