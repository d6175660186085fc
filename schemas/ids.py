"""Identifiers: sortable random ids for new things, derived ids for retried uploads."""

from __future__ import annotations

import os
import time
import uuid

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def sortable_id(prefix: str) -> str:
    """``prefix`` + a ULID-like id: 48 bits of milliseconds, then 80 random bits.

    Ids made later sort after ids made earlier (to the millisecond), which keeps
    btree inserts at the right edge and lists in creation order.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return prefix + "".join(reversed(chars))


_EVENT_NAMESPACE = uuid.UUID("6f0c1f3e-5a5e-4c1b-9d55-2b8f3c1a7e10")


def derived_id(*parts: str) -> str:
    """A stable id from its parts: the same parts always give the same id."""
    return uuid.uuid5(_EVENT_NAMESPACE, "\x1f".join(parts)).hex
