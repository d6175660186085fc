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
from typing import Final, NamedTuple

from schemas import Alias, AliasKind

MAX_EVENT_TYPE: Final = 128
"""Characters of an event type, after trimming."""
MAX_IDENTIFIER: Final = 512
"""Characters of a lead id or an alias value, after trimming."""

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

    Values are trimmed; an empty value counts as absent. An event needs a lead id or an
    alias, an event type, and, if a timestamp is given, an RFC 3339 one with an offset;
    without one it happened at ``default_time``.
    """
    lead_id = lead_id.strip()
    if len(lead_id) > MAX_IDENTIFIER:
        return f"lead_id: longer than {MAX_IDENTIFIER} characters"
    found: list[Alias] = []
    for kind, value in aliases:
        value = value.strip()
        if value:
            if len(value) > MAX_IDENTIFIER:
                return f"{kind}: longer than {MAX_IDENTIFIER} characters"
            found.append(Alias(kind, value))
    if not lead_id and not found:
        return IDENTITY_REQUIRED
    event_type = event_type.strip()
    if not event_type:
        return EVENT_TYPE_REQUIRED
    if len(event_type) > MAX_EVENT_TYPE:
        return f"event_type: longer than {MAX_EVENT_TYPE} characters"
    timestamp = timestamp.strip()
    when = parse_timestamp(timestamp) if timestamp else default_time
    if isinstance(when, str):
        return when
    return CheckedEvent(lead_id or None, tuple(found), event_type, when)


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
