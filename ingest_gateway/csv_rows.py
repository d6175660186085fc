"""The pure core of ``POST /import``: CSV bytes, fed as they arrive, to one event or error a row.

What it reads is what spreadsheets write: UTF-8 with or without a byte-order mark; LF,
CRLF or (old Mac) CR line ends; quoted fields holding commas, doubled quotes and line
breaks, split anywhere between chunks; blank lines; trailing empty columns.

Rows are numbered as a spreadsheet shows them, the first line being row 1: every record is
one row, even when a quoted field in it spans several lines, and a blank line is a row too
(a spreadsheet shows it empty) though it is neither imported nor an error. The header is
the first record that is not blank; so with no blank lines before it, it is row 1 and the
first data row is row 2.

Whole-file problems raise :class:`FileRejected` (the gateway answers 400 and publishes
nothing; 413 for :class:`TooManyRows`); a bad row becomes a :class:`RowError` and the rows
after it go on. The work is linear in the file's size whatever its shape, and bounded by
the limits below (rows, line length, header size).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ingest_gateway.events import check_event
from schemas import ALIAS_KINDS, AliasKind, LeadEvent

KNOWN_COLUMNS: Final = frozenset({"lead_id", "event_type", "timestamp", *ALIAS_KINDS})
_ID_COLUMNS: Final = "lead_id or an alias column (external_id, email, phone, cookie, social)"
_EXAMPLE: Final = "for example 'lead_id,event_type,timestamp'"


class FileRejected(Exception):
    """The whole file is refused; ``code`` and ``detail`` make the 400 body."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that is not imported, and why: ``"<field>: <what is wrong>"``."""

    row: int
    error: str


Record = tuple[int, "list[str] | str"]
"""A record's row number and its fields, or why it is not valid CSV."""


class TooManyRows(FileRejected):
    """The file has more rows than an import takes (the gateway answers 413)."""


ROW_LIMIT: Final = 419_430
"""Rows one file may have, its header and blank rows included: 10 MB / 25 bytes.

A row with a timestamp is at least 25 bytes (20 for the time, an identity and an event
type of a character each, two commas and a line end), so a file at the size limit whose
rows have timestamps is never refused; the limit bounds the work of files of tiny rows
(10 MB of ``a,b`` rows would be 2.6 million events).
"""
LINE_LIMIT: Final = 1024 * 1024
"""Characters of one line. The csv module parses a line in one call that no other thread
can interrupt (a 10 MB line of commas is 0.5 s and ten million fields); a row's fields are
at most 131,072 characters each, so a longer line is not a row of events."""


class CsvRecords:
    """CSV bytes fed in chunks → the complete records among them, numbered as rows.

    The csv module (C, strict) parses every complete line as it arrives. When a chunk
    ends inside a quoted field, the reader reports the end of its input there, and the
    lines of that unfinished record wait. They are parsed again only once at least as much
    text again has arrived (or the file ends): so however long a record grows, each
    character is parsed a bounded number of times, and the work stays linear in the file's
    size. Records come out in order all the same, some of them a chunk or two later.

    More than ``max_rows`` rows (default :data:`ROW_LIMIT`) raise :class:`TooManyRows`.
    """

    def __init__(self, *, max_rows: int | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._first = True  # no text decoded yet: a byte-order mark may come
        self._cr = False  # the last chunk ended in "\r", maybe the first half of "\r\n"
        self._text = ""  # text parsed last time but not finished; it starts where a record starts
        self._more: list[str] = []  # text decoded since, not parsed yet
        self._more_size = 0
        self._bytes = 0  # bytes decoded so far, for error messages
        self._lines = 1  # the line the text decoded so far ends on, for error messages
        self._line = 0  # characters of that line so far
        self.max_rows = ROW_LIMIT if max_rows is None else max_rows
        self.rows = 0
        """Records read so far, blank ones included: the last row number given."""

    def feed(self, data: bytes) -> list[Record]:
        held = self._decoder.getstate()[0]
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise self._not_utf8(held + data, exc.start, self._bytes - len(held)) from None
        self._bytes += len(data)
        return self._parse(self._normalise(text, final=False), final=False)

    def close(self) -> list[Record]:
        """The records left once the file ended."""
        held = self._decoder.getstate()[0]
        try:
            text = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise self._not_utf8(held, exc.start, self._bytes - len(held)) from None
        return self._parse(self._normalise(text, final=True), final=True)

    def _normalise(self, text: str, *, final: bool) -> str:
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        if self._cr:
            self._cr = False
            text = "\r" + text
        if not final and text.endswith("\r"):
            self._cr = True
            text = text[:-1]
        if "\r" in text:  # every line end becomes "\n", also inside quoted fields
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\x00" in text:
            line = self._lines + text.count("\n", 0, text.index("\x00"))
            raise FileRejected(
                "not_text",
                f"The file is not text: it holds a NUL byte (line {line}). Upload a CSV file; "
                "save a spreadsheet as 'CSV UTF-8' first.",
            )
        self._check_line_lengths(text)
        self._lines += text.count("\n")
        return text

    def _check_line_lengths(self, text: str) -> None:
        """FileRejected if a line passes LINE_LIMIT; a few str.rfind per LINE_LIMIT of text."""
        start, carried, size = 0, self._line, len(text)
        while True:
            # The current line starts at ``start`` (with ``carried`` characters before this
            # text): it must end within this window.
            window = start + LINE_LIMIT - carried + 1
            last = text.rfind("\n", start, min(window, size))
            if window > size:
                self._line = size - start + carried if last == -1 else size - last - 1
                return
            if last == -1:
                line = self._lines + text.count("\n", 0, start)
                raise FileRejected(
                    "line_too_long",
                    f"Line {line} of the file is over {LINE_LIMIT:,} characters: it is not a "
                    "row of events. Upload a CSV file of events.",
                )
            start, carried = last + 1, 0

    def _parse(self, text: str, *, final: bool) -> list[Record]:
        if text:
            self._more.append(text)
            self._more_size += len(text)
        if not final and ("\n" not in text or self._more_size < len(self._text)):
            return []  # no line ended, or too little text yet to parse what waits again
        buf = self._text + "".join(self._more)
        self._more.clear()
        self._more_size = 0
        end = len(buf) if final else buf.rfind("\n") + 1
        self._text = buf[end:]  # a line not ended yet
        if not end:
            return []
        lines = buf[:end]
        # Lines through a generator: the thread parsing lets others run between lines.
        reader = csv.reader((line for line in io.StringIO(lines, newline="\n")), strict=True)
        records: list[Record] = []
        row = self.rows
        limit = self.max_rows
        done = 0  # lines of the records read so far
        while True:
            try:
                for fields in reader:
                    row += 1
                    if row > limit:
                        raise self._too_many_rows()
                    records.append((row, fields))
                    done = reader.line_num
                break
            except csv.Error as exc:
                if not final and str(exc) == "unexpected end of data":
                    # The last record goes on in the next chunks: its lines wait for them.
                    self._text = lines[_after_lines(lines, done) :] + self._text
                    break
                row += 1  # the reader goes on with the next line
                if row > limit:
                    raise self._too_many_rows() from None
                records.append((row, _csv_problem(exc)))
                done = reader.line_num
        self.rows = row
        return records

    def _too_many_rows(self) -> TooManyRows:
        return TooManyRows(
            "too_many_rows",
            f"The file has more than {self.max_rows:,} rows (the header and blank rows "
            "count); split it into smaller files and import each.",
        )

    def _not_utf8(self, data: bytes, position: int, data_offset: int) -> FileRejected:
        """The rejection of ``data`` (which starts at byte ``data_offset`` of the file)."""
        offset = data_offset + position
        line = self._lines + data.count(b"\n", 0, position)
        what = f"byte 0x{data[position]:02X}" if position < len(data) else "a cut-off character"
        return FileRejected(
            "not_utf8",
            f"The file is not UTF-8 text: {what} at offset {offset} (line {line}). "
            "Save it as 'CSV UTF-8' and upload it again.",
        )


def _after_lines(text: str, lines: int) -> int:
    """Where the text after the first ``lines`` lines of ``text`` starts.

    A possessive regex walks the lines in C: for a record of two million lines, 40 ms
    against 0.9 s for a loop of ``str.find``.
    """
    match = re.match(rf"(?:[^\n]*+\n){{{lines}}}+", text)
    assert match is not None, "text has fewer lines than the reader read"
    return match.end()


def _csv_problem(exc: csv.Error) -> str:
    message = str(exc)
    if "expected after" in message:
        return 'not valid CSV: text after a closing quote (write a quote inside a field as "")'
    if "unexpected end of data" in message:
        return "not valid CSV: a quoted field is not closed before the end of the file"
    if "field larger than field limit" in message:
        return (
            f"not valid CSV: a field over {csv.field_size_limit()} characters (an unclosed quote?)"
        )
    return f"not valid CSV: {message}"


HEADER_COLUMNS_LIMIT: Final = 1000
"""Columns the header may name (empty names included)."""
HEADER_SIZE_LIMIT: Final = 64 * 1024
"""Characters of the header's names, separators included. With the columns limit it bounds
what an import keeps and answers of its ``ignored_columns``."""


def check_header_size(row: int, names: list[str]) -> None:
    """FileRejected (``header_too_large``) if the header passes a limit above."""
    size = sum(map(len, names)) + len(names) - 1
    if len(names) > HEADER_COLUMNS_LIMIT or size > HEADER_SIZE_LIMIT:
        raise FileRejected(
            "header_too_large",
            f"The header (row {row}) has {len(names):,} columns and {size:,} characters; "
            f"it may have at most {HEADER_COLUMNS_LIMIT:,} columns and "
            f"{HEADER_SIZE_LIMIT:,} characters. Remove the columns you do not import.",
        )


def column_name(index: int) -> str:
    """A 0-based column index as a spreadsheet names it: 0 → 'A', 27 → 'AB'."""
    name = ""
    index += 1
    while index:
        index, digit = divmod(index - 1, 26)
        name = chr(ord("A") + digit) + name
    return name


@dataclass(frozen=True)
class Header:
    """Where each known column is, and the columns ignored (names as written)."""

    row: int
    event_type: int
    lead_id: int | None
    timestamp: int | None
    aliases: tuple[tuple[AliasKind, int], ...]
    ignored_columns: tuple[str, ...]

    @classmethod
    def read(cls, row: int, names: list[str]) -> Header:
        """The header of these column names; FileRejected if it cannot import anything.

        Names are matched without regard to case or surrounding spaces, in any order;
        unknown names are ignored, empty ones skipped, a repeated name refused.
        """
        where: dict[str, int] = {}
        ignored: list[str] = []
        for index, raw in enumerate(names):
            name = raw.strip().lower()
            if not name:
                continue
            if name in where:
                first = where[name]
                raise FileRejected(
                    "duplicate_column",
                    f"The header (row {row}) names {raw.strip()!r} twice, in columns "
                    f"{column_name(first)} and {column_name(index)}; "
                    "rename or remove one of them.",
                )
            where[name] = index
            if name not in KNOWN_COLUMNS:
                ignored.append(raw.strip())
        if "event_type" not in where:
            raise FileRejected(
                "missing_column",
                f"The header (row {row}) has no event_type column. The first row must name "
                f"the columns, {_EXAMPLE}.",
            )
        aliases = tuple((kind, where[kind]) for kind in ALIAS_KINDS if kind in where)
        if "lead_id" not in where and not aliases:
            raise FileRejected(
                "missing_column",
                f"The header (row {row}) has no {_ID_COLUMNS}: add one so that each row "
                "names its lead.",
            )
        return cls(
            row=row,
            event_type=where["event_type"],
            lead_id=where.get("lead_id"),
            timestamp=where.get("timestamp"),
            aliases=aliases,
            ignored_columns=tuple(ignored),
        )


class ImportRows:
    """CSV bytes of one import, fed as they arrive → a LeadEvent or a RowError per data row.

    ``event_id(row)`` names the event of a row; a row without a timestamp happened at
    ``received_at``.
    """

    def __init__(
        self,
        *,
        unit_id: str,
        import_id: str,
        skip_triggers: bool,
        received_at: datetime,
        event_id: Callable[[int], str],
    ) -> None:
        self.unit_id = unit_id
        self.import_id = import_id
        self.skip_triggers = skip_triggers
        self.received_at = received_at
        self.event_id = event_id
        self.header: Header | None = None
        self._records = CsvRecords()

    def feed(self, data: bytes) -> list[LeadEvent | RowError]:
        return self._rows(self._records.feed(data))

    def close(self) -> list[LeadEvent | RowError]:
        """The rows left once the file ended; FileRejected if it had no header."""
        rows = self._rows(self._records.close())
        if self.header is None:
            raise FileRejected(
                "empty_file",
                f"The file is empty. Send a CSV whose first row names the columns, {_EXAMPLE}.",
            )
        return rows

    def _rows(self, records: list[Record]) -> list[LeadEvent | RowError]:
        out: list[LeadEvent | RowError] = []
        header = self.header
        for row, fields in records:
            if isinstance(fields, str):
                if header is None:
                    raise FileRejected("invalid_header", f"The header (row {row}) is {fields}.")
                out.append(RowError(row, fields))
                continue
            if not "".join(fields).strip():
                continue  # a blank row: it keeps its number, and is neither event nor error
            if header is None:
                check_header_size(row, fields)
                header = self.header = Header.read(row, fields)
                continue
            out.append(self._row(header, row, fields))
        return out

    def _row(self, header: Header, row: int, fields: list[str]) -> LeadEvent | RowError:
        n = len(fields)  # a short row lacks its last values: they count as empty
        lead = header.lead_id
        at = header.timestamp
        checked = check_event(
            fields[lead] if lead is not None and lead < n else "",
            [(kind, fields[i]) for kind, i in header.aliases if i < n],
            fields[header.event_type] if header.event_type < n else "",
            fields[at] if at is not None and at < n else "",
            default_time=self.received_at,
        )
        if isinstance(checked, str):
            return RowError(row, checked)
        return LeadEvent(
            event_id=self.event_id(row),
            unit_id=self.unit_id,
            lead_id=checked.lead_id,
            aliases=checked.aliases,
            event_type=checked.event_type,
            timestamp=checked.timestamp,
            source="import",
            skip_triggers=self.skip_triggers,
            import_id=self.import_id,
            row=row,
        )
