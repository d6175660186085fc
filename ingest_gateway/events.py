"""What makes an event acceptable: the one validation of CSV rows and JSON events.

``POST /import`` (a row of the file) and ``POST /ingest`` (a JSON object) both hand the
values they read to :func:`check_event`, so both accept the same events and explain a
refusal with the same words: ``"<field>: <what is wrong>"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final, NamedTuple

from ingest_gateway.text import free_text_problem, identifier_problem
from schemas import Alias, AliasKind
from schemas.aliases import names_someone, normalise

MAX_EVENT_TYPE: Final = 128
"""Characters of an event type, after trimming."""
MAX_IDENTIFIER: Final = 512
"""Characters of a lead id or an alias value, after trimming, and of its normalised form."""
MAX_ALIASES: Final = 20
"""Aliases of one event (a CSV row has at most one per alias column, so five)."""

_NAMES_NO_ONE: Final = {
    "email": "nothing is left once spaces and invisible characters are removed",
    "phone": "it has no digits 0-9",
}

IDENTITY_REQUIRED: Final = (
    "lead_id or an alias (external_id, email, phone, cookie, social): at least one is required"
)
EVENT_TYPE_REQUIRED: Final = "event_type: required"

# RFC 3339 date-time: full date, 'T' (or 't' or a space, as the RFC allows), full time with
# optional fraction, and an offset. The offset is optional here only so that a timestamp
# without one gets its own, clearer message.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)


class CheckedEvent(NamedTuple):
    """The values of an acceptable event: trimmed, empty ones dropped, time in UTC."""

    lead_id: str | None
    aliases: tuple[Alias, ...]
    event_type: str
    timestamp: datetime


def check_event(
    lead_id: str,
    aliases: Iterable[tuple[AliasKind, str]],
    event_type: str,
    timestamp: str,
    *,
    default_time: datetime,
) -> CheckedEvent | str:
    """The event these values describe, or why they describe none (the first problem).

    Values are trimmed; an empty value counts as absent, and so does an alias that
    normalises to nothing (a phone of ``n/a``): the scorer could not resolve it. An event
    needs a lead id or an alias that names someone, an event type, and, if a timestamp is
    given, an RFC 3339 one with an offset; without one it happened at ``default_time``.
    Identities and the event type hold no control character (:mod:`ingest_gateway.text`;
    printable text has none, so most values are checked without a call).
    """
    lead_id = lead_id.strip()
    if len(lead_id) > MAX_IDENTIFIER:
        return f"lead_id: longer than {MAX_IDENTIFIER} characters"
    if not lead_id.isprintable() and (problem := identifier_problem(lead_id)):
        return f"lead_id: {problem}"
    found: list[Alias] = []
    names_no_one: tuple[AliasKind, str] | None = None
    for kind, value in aliases:
        value = value.strip()
        if value:
            if len(value) > MAX_IDENTIFIER:
                return f"{kind}: longer than {MAX_IDENTIFIER} characters"
            if not value.isprintable() and (problem := identifier_problem(value)):
                return f"{kind}: {problem}"
            # Only a value beyond ASCII can grow when normalised (NFKC writes some
            # characters as several).
            if not value.isascii() and len(normalise(kind, value)) > MAX_IDENTIFIER:
                return f"{kind}: longer than {MAX_IDENTIFIER} characters once normalised"
            if not names_someone(kind, value):
                names_no_one = names_no_one or (kind, value)
                continue
            found.append(Alias(kind, value))
    if not lead_id and not found:
        if names_no_one is None:
            return IDENTITY_REQUIRED
        kind, value = names_no_one
        return (
            f"{kind}: {shown(value)} names no one ({_NAMES_NO_ONE.get(kind, 'it is empty')}); "
            "an event needs lead_id or an alias that identifies its lead"
        )
    event_type = event_type.strip()
    if not event_type:
        return EVENT_TYPE_REQUIRED
    if len(event_type) > MAX_EVENT_TYPE:
        return f"event_type: longer than {MAX_EVENT_TYPE} characters"
    if not event_type.isprintable() and (problem := identifier_problem(event_type)):
        return f"event_type: {problem}"
    timestamp = timestamp.strip()
    when = parse_timestamp(timestamp) if timestamp else default_time
    if isinstance(when, str):
        return when
    return CheckedEvent(lead_id or None, tuple(found), event_type, when)


def metadata_problem(metadata: dict[str, Any]) -> str | None:
    """Why an event's metadata cannot be stored, naming where (``metadata.a.b[2]``), or None.

    Every key and string value, at any depth, is free text (:mod:`ingest_gateway.text`).
    """
    todo: list[tuple[str, Any]] = [("metadata", metadata)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, str):
            if problem := free_text_problem(value):
                return f"{path}: {problem}"
        elif isinstance(value, dict):
            inner: list[tuple[str, Any]] = []
            for key, item in value.items():
                if problem := free_text_problem(key):
                    return f"{path}: the key {shown(key)} {problem}"
                inner.append((f"{path}.{key if len(key) <= 40 else key[:40] + '...'}", item))
            todo.extend(reversed(inner))
        elif isinstance(value, list):
            todo.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(value)]))
    return None


def parse_timestamp(text: str) -> datetime | str:
    """An RFC 3339 timestamp as a UTC datetime, or the error that explains why it is not one.

    Fractions beyond microseconds are truncated; leap seconds (:60) are refused.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return f"timestamp: not RFC 3339: {shown(text)}"
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if not (zulu or sign):
        return f"timestamp: no UTC offset (add Z or one like +02:00): {shown(text)}"
    if sign and (int(off_h) > 23 or int(off_m) > 59):
        return f"timestamp: not RFC 3339: {shown(text)}"
    try:
        moment = datetime.fromisoformat(text)  # C, and the form is checked: the fast path
    except ValueError:  # 't' or 'z' in lower case, or a date or time that does not exist
        micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
        zone = UTC if zulu else _zone(sign, off_h, off_m)
        try:
            moment = datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second), micro, zone
            )
        except ValueError:
            return f"timestamp: not RFC 3339: {shown(text)}"
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return f"timestamp: not RFC 3339: {shown(text)}"


@lru_cache(maxsize=128)
def _zone(sign: str, hours: str, minutes: str) -> timezone:
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-offset if sign == "-" else offset)


def shown(value: str, limit: int = 40) -> str:
    """A value quoted for an error message, shortened when long."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."
