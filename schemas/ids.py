"""Identifiers: sortable random ids for new things, derived ids for retried uploads."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def sortable_id(prefix: str, *, millis: int | None = None, entropy: bytes | None = None) -> str:
    """``prefix`` + a ULID-like id: 48 bits of milliseconds, then 80 random bits.

    Ids made later sort after ids made earlier (to the millisecond), which keeps
    btree inserts at the right edge and lists in creation order.

    ``millis`` (default: now) and ``entropy`` (default: 10 random bytes; only the first
    10 are used) make the id reproducible, for a consumer that must take the same
    decision again when it reprocesses a record.
    """
    if millis is None:
        millis = time.time_ns() // 1_000_000
    if entropy is None:
        entropy = os.urandom(10)
    millis = max(millis, 0) & ((1 << 48) - 1)
    value = millis << 80 | int.from_bytes(entropy[:10].ljust(10, b"\0"), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return prefix + "".join(reversed(chars))


_EVENT_NAMESPACE = uuid.UUID("6f0c1f3e-5a5e-4c1b-9d55-2b8f3c1a7e10")


def derived_id(*parts: str) -> str:
    """A stable id from its parts: the same parts always give the same id."""
    return uuid.uuid5(_EVENT_NAMESPACE, "\x1f".join(parts)).hex


def derived_ids(*parts: str) -> Callable[[str], str]:
    """``derived_id(*parts, last)`` as a function of ``last``, several times faster.

    For the many ids that share their first parts (every row of one upload). Gives exactly
    what :func:`derived_id` gives.
    """
    shared = _EVENT_NAMESPACE.bytes + "".join(p + "\x1f" for p in parts).encode()

    def derive(last: str) -> str:
        hexed = hashlib.sha1(shared + last.encode()).hexdigest()
        # As uuid5 does: version 5 in the 13th digit, the RFC 4122 variant in the 17th.
        return hexed[:12] + "5" + hexed[13:16] + _VARIANT[hexed[16]] + hexed[17:32]

    return derive


_VARIANT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}


ROW_BITS = 35
"""Bits of the row number in :func:`ordered_ids`' ids: rows 0 to 34,359,738,367."""
_DIGITS2 = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_DIGITS3 = [a + bc for a in _CROCKFORD for bc in _DIGITS2]


def ordered_ids(prefix: str, millis: int, *parts: str) -> Callable[[int], str]:
    """Row number → ``prefix`` + a :func:`sortable_id` that is the same for the same inputs.

    Its time is ``millis`` (a stored time, such as an import's creation: never the clock,
    so that a retry gives the same ids); its 80 other bits are the row number (35 bits,
    7 digits) then 45 bits (9 digits) of a hash of ``parts``. So the ids of one upload sort
    by row, after every id made earlier, and a btree keyed by them grows at its right edge
    instead of splitting pages all over (README "Performance"); two uploads made in the
    same millisecond differ by their parts' hash. One table look-up per 2 or 3 digits:
    about as fast as :func:`derived_ids`' one hash a row.
    """
    head = sortable_id(prefix, millis=millis, entropy=bytes(10))[: len(prefix) + 10]
    digest = hashlib.sha1(_EVENT_NAMESPACE.bytes + "\x1f".join(parts).encode()).digest()
    tail = sortable_id("", millis=0, entropy=digest)[-9:]  # the digest's last 45 bits
    digits2, digits3 = _DIGITS2, _DIGITS3

    def derive(row: int) -> str:
        if not 0 <= row < 1 << ROW_BITS:
            raise ValueError(f"row {row} is not in 0 to 2**{ROW_BITS} - 1")
        return head + digits2[row >> 25] + digits2[row >> 15 & 1023] + digits3[row & 32767] + tail

    return derive


def id_millis(sortable: str, prefix: str) -> int:
    """The milliseconds of a :func:`sortable_id` (or :func:`ordered_ids`) id."""
    value = 0
    for char in sortable[len(prefix) : len(prefix) + 10]:
        value = value * 32 + _CROCKFORD.index(char)
    return value
