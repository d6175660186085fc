"""Which characters request text may hold: the one check before anything reaches Postgres.

Postgres ``text`` and ``jsonb`` cannot hold NUL (U+0000), and an unpaired surrogate is
not UTF-8 at all: either fails the statement that carries it (a 500 in the gateway, a
failed batch in the scorer). Beyond what Postgres can store:

- an **identifier** (lead id, alias value, event type, a name or id in a path, query or
  JSON field) holds no control character at all: C0 (U+0000-U+001F, tab and line breaks
  included), DEL (U+007F) and C1 (U+0080-U+009F). Nobody types one in an identity on
  purpose, and an invisible difference would make two identities that look the same;
- **free text** (the keys and string values of an event's metadata) holds no C0
  control character but tab, line feed and carriage return, which notes and addresses
  carry; DEL and C1 pass, as JSON and Postgres store them as they are.

Unpaired surrogates are refused in both (JSON decoding refuses them before this check;
the check keeps them out whatever the source).
"""

from __future__ import annotations

import re
from typing import Final

_IDENTIFIER: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FREE_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def identifier_problem(value: str) -> str | None:
    """Why ``value`` cannot be an identifier (a phrase for ``"<field>: <problem>"``), or None."""
    if value.isprintable():  # the common case, in C: every character refused is unprintable
        return None
    return _problem(_IDENTIFIER.search(value))


def free_text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as free text, or None."""
    if value.isprintable():
        return None
    return _problem(_FREE_TEXT.search(value))


def _problem(match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    code = ord(match.group())
    what = "an unpaired surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    return f"holds {what} (U+{code:04X}) at position {match.start() + 1}; remove it"
