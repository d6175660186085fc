from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import ALIAS_KINDS, Alias, AliasKind
from schemas.aliases import INVISIBLE, by_priority, names_someone, normalise


def test_email_is_trimmed_and_lower_cased() -> None:
    assert normalise("email", "  Jane@ACME.com ") == "jane@acme.com"


def test_phone_keeps_digits_and_a_leading_plus() -> None:
    assert normalise("phone", "+1 (415) 555-0100") == "+14155550100"
    assert normalise("phone", "415.555.0100") == "4155550100"


def test_priority_order() -> None:
    aliases = (Alias("cookie", "c1"), Alias("email", "a@b.c"), Alias("external_id", "x"))
    assert [a.kind for a in by_priority(aliases)] == ["external_id", "email", "cookie"]


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("Straße@Example.DE", "straße@example.de"),  # lower-cased, not casefolded: ß stays
        ("\u1e9e@x.de", "ß@x.de"),  # capital sharp s lower-cases to ß
        ("\uff4a\uff41\uff4e\uff45@\uff21\uff23\uff2d\uff25.com", "jane@acme.com"),  # full-width
        ("e\u0301mile@x.fr", "\u00e9mile@x.fr"),  # decomposed é: NFKC composes it
        ("ja\u200bne@acme.com", "jane@acme.com"),  # zero-width space
        ("\ufeffja\u200c\u200dne\u2060@acme.com", "jane@acme.com"),  # BOM, ZWNJ, ZWJ, WJ
        ("so\u00adft@x.com", "soft@x.com"),  # soft hyphen
        ("\u00a0jane@acme.com\u3000", "jane@acme.com"),  # NFKC makes these spaces: trimmed
        ("\u200b", ""),
    ],
)
def test_email_is_nfkc_lower_cased_without_invisible_characters(written: str, stored: str) -> None:
    assert normalise("email", written) == stored


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("+1 415 ²555", "+1415555"),  # superscript two is no digit (str.isdigit says it is)
        ("٣٣ 12", "12"),  # Arabic-Indic digits neither
        ("\uff11\uff12", ""),  # nor full-width ones
        ("n/a", ""),
        ("+", ""),  # a plus alone names no one
        ("\u200b+44 20", "+4420"),  # an invisible character does not hide the plus
        ("0044 20", "004420"),
    ],
)
def test_phone_keeps_ascii_digits_only(written: str, stored: str) -> None:
    assert normalise("phone", written) == stored


@pytest.mark.parametrize("kind", ["external_id", "social", "cookie"])
def test_opaque_kinds_are_only_trimmed(kind: AliasKind) -> None:
    assert normalise(kind, " Ab\u200bC ") == "Ab\u200bC"


@given(st.sampled_from(ALIAS_KINDS), st.text())
def test_normalising_twice_changes_nothing(kind: AliasKind, value: str) -> None:
    once = normalise(kind, value)
    assert normalise(kind, once) == once


@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_a_normalised_phone_is_ascii_digits_with_an_optional_leading_plus(value: str) -> None:
    assert re.fullmatch(r"(\+?[0-9]+)?", normalise("phone", value))


@given(st.text())
def test_a_normalised_email_has_no_invisible_character_and_is_lower_case(value: str) -> None:
    stored = normalise("email", value)
    assert not set(INVISIBLE) & set(stored)
    assert stored == stored.lower()
    assert stored == unicodedata.normalize("NFKC", stored)


@given(st.sampled_from(ALIAS_KINDS), st.text())
def test_names_someone_is_whether_the_normalised_value_is_empty(
    kind: AliasKind, value: str
) -> None:
    assert names_someone(kind, value) == bool(normalise(kind, value))
