"""Alias normalisation: the one definition of when two alias values are the same.

The gateway uses it to key events (so one lead's events share a partition), the scorer
to resolve identity, the read API to look leads up.
"""

from __future__ import annotations

from schemas.records import ALIAS_KINDS, Alias, AliasKind


def normalise(kind: AliasKind, value: str) -> str:
    """E-mail trimmed and lower-cased; phone reduced to digits and a leading +; others trimmed."""
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        digits = "".join(c for c in value if c.isdigit())
        return "+" + digits if value.startswith("+") else digits
    return value


def normalised(alias: Alias) -> Alias:
    return Alias(alias.kind, normalise(alias.kind, alias.value))


def by_priority(aliases: tuple[Alias, ...]) -> list[Alias]:
    """Aliases sorted highest priority first (external_id, email, phone, social, cookie)."""
    return sorted(aliases, key=lambda a: ALIAS_KINDS.index(a.kind))


def partition_key(unit_id: str, lead_id: str | None, aliases: tuple[Alias, ...]) -> bytes:
    """The Kafka key ``unit:identity``: the lead id, else the highest-priority alias."""
    if lead_id:
        identity = lead_id
    else:
        top = normalised(by_priority(aliases)[0])
        identity = f"{top.kind}={top.value}"
    return f"{unit_id}:{identity}".encode()
