"""The contracts shared by every service: topic names, versioned records, one codec.

Nothing else is shared between the gateway, the scorer and the trigger service.
"""

from schemas.codec import DecodeError, decode, encode
from schemas.records import (
    ALIAS_KINDS,
    Alias,
    AliasKind,
    ConflictingAlias,
    DeadLetter,
    LeadEvent,
    ScoredEvent,
    Source,
    TriggerFired,
)
from schemas.topics import DEFAULT_TOPICS, Topics, partition_key

__all__ = [
    "ALIAS_KINDS",
    "DEFAULT_TOPICS",
    "Alias",
    "AliasKind",
    "ConflictingAlias",
    "DeadLetter",
    "DecodeError",
    "LeadEvent",
    "ScoredEvent",
    "Source",
    "Topics",
    "TriggerFired",
    "decode",
    "encode",
    "partition_key",
]
