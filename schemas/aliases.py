"""Alias normalisation: the one definition of when two alias values are the same.

The gateway uses it to refuse events that name no one, the scorer to resolve identity,
the read API to look leads up.

- **email**: invisible characters removed (zero-width space, non-joiner and joiner,
  word joiner, byte-order mark, soft hyphen), Unicode NFKC, lower-cased (``str.lower``,
  not ``casefold``: ``ß`` stays ``ß``), trimmed. So a full-width or decomposed spelling
  of an address is the same address.
- **phone**: the ASCII digits 0-9 only, with a leading ``+`` kept; no digits at all is
  empty. ``²``, ``٣`` (Arabic-Indic three) or a full-width three are not phone digits.
- **external_id, social, cookie**: trimmed only; they are opaque.

An empty result names no one: the alias is ignored, and an event with nothing else is
refused by the gateway.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from schemas.records import ALIAS_KINDS, Alias, AliasKind

INVISIBLE: Final = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
"""Characters removed from e-mails: they show as nothing, so nobody types them on purpose."""
_REMOVE_INVISIBLE: Final = dict.fromkeys(map(ord, INVISIBLE))
_NOT_DIGITS: Final = re.compile("[^0-9]+")
_DIGIT: Final = re.compile("[0-9]")
_ASCII_NOT_DIGITS: Final = {c: None for c in range(128) if not 0x30 <= c <= 0x39}


def normalise(kind: AliasKind, value: str) -> str:
    """The value under which an alias of ``kind`` is stored and looked up ("" for none)."""
    if kind == "email":
        return _email(value)
    if kind == "phone":
        return _phone(value)
    return value.strip()


def names_someone(kind: AliasKind, value: str) -> bool:
    """``normalise(kind, value) != ""``, without building the value in the common cases."""
    if kind == "phone":
        return _DIGIT.search(value) is not None
    if kind == "email" and not value.isascii():
        return bool(_email(value))
    return bool(value.strip())


def _email(value: str) -> str:
    if value.isascii():  # the common case: NFKC changes nothing, nothing is invisible
        return value.strip().lower()
    value = unicodedata.normalize("NFKC", value.translate(_REMOVE_INVISIBLE)).lower()
    # Lower-casing can leave a string NFKC would change again (İ → i + combining dot).
    return unicodedata.normalize("NFKC", value).strip()


def _phone(value: str) -> str:
    ascii_value = value.isascii()
    digits = value.translate(_ASCII_NOT_DIGITS) if ascii_value else _NOT_DIGITS.sub("", value)
    if not digits:
        return ""
    head = value.lstrip()
    if not ascii_value:
        head = head.translate(_REMOVE_INVISIBLE).lstrip()
    return "+" + digits if head.startswith("+") else digits


def by_priority(aliases: tuple[Alias, ...]) -> list[Alias]:
    """Aliases sorted highest priority first (external_id, email, phone, social, cookie)."""
    return sorted(aliases, key=lambda a: ALIAS_KINDS.index(a.kind))
