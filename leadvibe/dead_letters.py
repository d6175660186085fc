"""Dead letters that always fit in a Kafka request, however large the record they keep."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final

import msgspec

from schemas import DeadLetter, encode

MAX_LETTER_BYTES: Final = 900 * 1024
"""The most a dead letter's key and encoded value take together. The producer refuses a
request over 1 MiB (``max_request_size``, the broker's ``message.max.bytes`` is about
the same); the rest is left for the record's and the request's own headers."""

MAX_KEY_BYTES: Final = 1024
"""A longer key is kept cut to this length (keys are ``unit:lead`` ids, far shorter)."""

MAX_REASON_CHARS: Final = 2000


def dead_letter(
    *,
    consumer_group: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    failed_at: datetime,
    limit: int = MAX_LETTER_BYTES,
) -> tuple[bytes | None, bytes]:
    """The (key, encoded DeadLetter) to publish for a record, at most ``limit`` bytes.

    The letter keeps the record's size and SHA-256 digest; when the whole value would make
    it too large, it keeps the value's first bytes only and says ``value_truncated``. The
    record itself stays at ``topic``/``partition``/``offset`` for as long as the topic
    keeps it.
    """
    if key is not None and len(key) > MAX_KEY_BYTES:
        key = key[:MAX_KEY_BYTES]
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    letter = DeadLetter(
        consumer_group=consumer_group,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        reason=reason,
        failed_at=failed_at,
        value_size=None if value is None else len(value),
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
    )
    room = limit - len(key or b"")
    encoded = encode(letter)
    if len(encoded) <= room or value is None:
        return key, encoded
    empty = msgspec.structs.replace(letter, value=b"", value_truncated=True)
    # The JSON codec writes bytes in base64: 4 characters for every 3 bytes.
    kept = max(0, room - len(encode(empty))) // 4 * 3
    return key, encode(msgspec.structs.replace(empty, value=value[:kept]))
