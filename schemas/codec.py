"""The one codec of every record: JSON through msgspec.

JSON keeps the topics readable with Kafka's own console tools; msgspec validates types
while decoding, so a consumer never handles a half-parsed record.
"""

from __future__ import annotations

from functools import cache
from typing import TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()


class DecodeError(ValueError):
    """A record's bytes are not a valid record of the expected type."""


def encode(record: msgspec.Struct) -> bytes:
    """Encode a record to its wire form."""
    return _encoder.encode(record)


@cache
def _decoder(record_type: type[T]) -> msgspec.json.Decoder[T]:
    return msgspec.json.Decoder(record_type)


def decode(data: bytes | None, record_type: type[T]) -> T:
    """Decode ``data`` as ``record_type``; unknown fields are ignored.

    Raises DecodeError, naming what is wrong, for anything else.
    """
    if data is None:
        raise DecodeError("empty record (no value)")
    try:
        record: T = _decoder(record_type).decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(str(exc)) from None
    return record
