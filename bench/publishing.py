"""Publishing what a benchmark generates: a chunk at a time, so that a million records
never stand in memory at once, each chunk in one call of the project's batched send."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from leadvibe.producing import open_producer, publish_batched

CHUNK = 50_000
"""Records encoded and sent per call."""


async def publish_chunked(
    bootstrap_servers: str, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> None:
    """Every (key, value) of ``records`` on ``topic``; ``records`` is read a chunk at a time."""
    pending = iter(records)
    async with open_producer(bootstrap_servers) as producer:
        while chunk := list(itertools.islice(pending, CHUNK)):
            await publish_batched(producer, topic, chunk)
