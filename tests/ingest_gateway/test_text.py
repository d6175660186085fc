"""Which characters request text may hold before it reaches Postgres."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_gateway.text import free_text_problem, identifier_problem


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t", "\n", "\r", "\x1f", "\x7f", "\x85", "\x9f"])
def test_an_identifier_holds_no_control_character(char: str) -> None:
    assert identifier_problem(f"ab{char}c") == (
        f"holds a control character (U+{ord(char):04X}) at position 3; remove it"
    )


def test_an_unpaired_surrogate_is_refused_in_both() -> None:
    expected = "holds an unpaired surrogate (U+D800) at position 1; remove it"
    assert identifier_problem("\ud800x") == expected
    assert free_text_problem("\ud800x") == expected


@pytest.mark.parametrize("value", ["ld_1", "Jane Doe", "straße@x.de", "ok\u200b", "\u00a0", "😀"])
def test_printable_text_is_an_identifier(value: str) -> None:
    assert identifier_problem(value) is None


def test_free_text_keeps_tabs_and_line_breaks_and_refuses_other_c0() -> None:
    assert free_text_problem("line one\r\nline two\tend\x7f\x85") is None
    assert free_text_problem("a\x00") == (
        "holds a control character (U+0000) at position 2; remove it"
    )
    assert free_text_problem("\x0b") is not None


@given(st.text())
def test_what_is_refused_is_what_postgres_or_identities_cannot_take(value: str) -> None:
    refused = any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in value
    )
    assert (identifier_problem(value) is not None) == refused
    if "\x00" in value:
        assert free_text_problem(value) is not None
