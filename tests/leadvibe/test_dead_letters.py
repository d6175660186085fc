"""A dead letter always fits in a Kafka request, and keeps how to recognise its record."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from leadvibe.dead_letters import MAX_KEY_BYTES, MAX_LETTER_BYTES, MAX_REASON_CHARS, dead_letter
from schemas import DeadLetter, decode

WHEN = datetime(2025, 6, 15, tzinfo=UTC)


def _letter(value: bytes | None, **overrides: Any) -> tuple[bytes | None, bytes]:
    fields: dict[str, Any] = {
        "consumer_group": "leadvibe-scorer",
        "topic": "leadvibe.events",
        "partition": 2,
        "offset": 41,
        "key": b"ou_1:ld_1",
        "value": value,
        "reason": "no identity",
        "failed_at": WHEN,
    }
    return dead_letter(**(fields | overrides))


def test_a_small_record_is_kept_whole_with_its_size_and_digest() -> None:
    key, encoded = _letter(b'{"event_id": "e1"}')
    letter = decode(encoded, DeadLetter)
    assert key == b"ou_1:ld_1"
    assert letter.value == b'{"event_id": "e1"}'
    assert letter.value_size == 18
    assert letter.value_sha256 == hashlib.sha256(b'{"event_id": "e1"}').hexdigest()
    assert not letter.value_truncated
    assert (letter.topic, letter.partition, letter.offset) == ("leadvibe.events", 2, 41)


def test_a_record_near_the_request_limit_is_truncated_to_fit() -> None:
    value = bytes(range(256)) * 4000  # 1,024,000 bytes: 1.37 MB once in base64
    key, encoded = _letter(value)
    assert len(encoded) + len(key or b"") <= MAX_LETTER_BYTES
    letter = decode(encoded, DeadLetter)
    assert letter.value_truncated
    assert letter.value is not None
    assert value.startswith(letter.value)
    assert len(letter.value) > MAX_LETTER_BYTES * 0.7  # most of the room is used
    assert letter.value_size == len(value)
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()


def test_the_truncated_letter_fills_the_room_to_the_byte_exactly_or_under() -> None:
    value = b"x" * 5000
    for limit in range(1000, 1100):
        _, encoded = _letter(value, limit=limit, key=None)
        assert len(encoded) <= limit
        letter = decode(encoded, DeadLetter)
        # One more base64 quantum (3 bytes, 4 characters) would not have fitted.
        assert len(encoded) + 4 > limit
        assert letter.value == value[: len(letter.value or b"")]


def test_a_huge_key_and_reason_are_cut_too() -> None:
    key, encoded = _letter(b"v" * 2_000_000, key=b"k" * 2_000_000, reason="r" * 100_000)
    assert key == b"k" * MAX_KEY_BYTES
    assert len(encoded) + len(key) <= MAX_LETTER_BYTES
    letter = decode(encoded, DeadLetter)
    assert len(letter.reason) == MAX_REASON_CHARS
    assert letter.value_size == 2_000_000


def test_a_record_without_a_value() -> None:
    _, encoded = _letter(None)
    letter = decode(encoded, DeadLetter)
    assert letter.value is None
    assert letter.value_size is None
    assert letter.value_sha256 is None


def test_letters_of_older_consumers_still_decode() -> None:
    old = (
        b'{"version":1,"consumer_group":"g","topic":"t","partition":0,"offset":3,"key":null,'
        b'"value":"' + base64.b64encode(b"abc") + b'","reason":"r",'
        b'"failed_at":"2025-06-15T00:00:00Z"}'
    )
    letter = decode(old, DeadLetter)
    assert letter.value == b"abc"
    assert (letter.value_size, letter.value_sha256, letter.value_truncated) == (None, None, False)
