"""Live events (``POST /ingest``) on their way to Kafka: shared batches, and back-pressure.

Every request's records go into the batches all concurrent requests share
(:class:`leadvibe.producing.SharedBatches`), and the request is answered once Kafka
acknowledged its own. What the gateway holds unacknowledged is bounded
(``ingest_buffer_bytes``, LEADVIBE_INGEST_BUFFER_MB): a request that would go past the
bound waits its turn, in arrival order, up to ``ingest_wait_seconds``
(LEADVIBE_INGEST_WAIT_SECONDS); only then is it refused with 429 and Retry-After. So load
shows as latency first and as 429 at the bound, and 503 always means that Kafka is
unreachable or did not acknowledge in time (``ingest_gateway.publishing``), never that
the gateway's own queue is long.

The CSV import (``POST /import``) does not come here: it fills whole batches of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest_gateway.errors import ServiceUnavailable, TooManyRequests
from ingest_gateway.publishing import PUBLISH_TIMEOUT, RETRY_AFTER, ensure_reachable
from leadvibe.producing import SharedBatches

log = logging.getLogger(__name__)

RECORD_OVERHEAD: Final = 70
"""Bytes a record costs in a batch beyond its key and value (headers, varints): counted so
that a bound in bytes also bounds many tiny records."""
BUSY_RETRY_AFTER: Final = 1
"""Seconds a client is asked to wait after a 429: the bound drains in well under that."""


class Budget:
    """``capacity`` units shared by the callers, granted in arrival order.

    The pure core of the back-pressure: a caller takes what its request needs (at most the
    capacity, so that one request larger than the bound still goes alone) and gives it
    back once answered.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_take(self, amount: int) -> int | None:
        """The amount taken now (capped at the capacity), or None if the caller must wait."""
        amount = min(amount, self.capacity)
        if self._waiting or self.used + amount > self.capacity:
            return None
        self.used += amount
        return amount

    async def take(self, amount: int, timeout: float) -> int | None:
        """The amount taken, waiting up to ``timeout`` seconds in line; None past it."""
        taken = self.try_take(amount)
        if taken is not None:
            return taken
        amount = min(amount, self.capacity)
        turn = asyncio.get_running_loop().create_future()
        entry = (amount, turn)
        self._waiting.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await turn
        except TimeoutError:
            if turn.done() and not turn.cancelled():  # granted as the deadline struck
                return amount
            self._waiting.remove(entry)
            self._grant()  # those behind it may fit now
            return None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give(amount)
            else:
                self._waiting.remove(entry)
                self._grant()
            raise
        return amount

    def give(self, amount: int) -> None:
        self.used -= amount
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.used + self._waiting[0][0] <= self.capacity:
            amount, turn = self._waiting.popleft()
            self.used += amount
            turn.set_result(None)


class LiveEvents:
    """The gateway's live events: one per process, over its producer."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, *, buffer_bytes: int, wait: float
    ) -> None:
        self.producer = producer
        self.batches = SharedBatches(producer, topic)
        self.budget = Budget(buffer_bytes)
        self.wait = wait

    async def publish(self, records: list[tuple[bytes, bytes]]) -> None:
        """Publish the records; return once Kafka acknowledged every one.

        429 if the gateway holds ``buffer_bytes`` unacknowledged for longer than ``wait``
        seconds; 503 if Kafka is unreachable or does not acknowledge within the deadline
        (after which some of the records may have been published: a retry with the same
        Idempotency-Key is counted once).
        """
        size = sum(len(key) + len(value) + RECORD_OVERHEAD for key, value in records)
        taken = await self.budget.take(size, self.wait)
        if taken is None:
            raise TooManyRequests(
                f"The service is taking in more events than Kafka acknowledges; nothing of "
                f"this request was accepted. Send it again in {BUSY_RETRY_AFTER} second "
                "(with the same Idempotency-Key, if it has one).",
                code="too_busy",
                retry_after=BUSY_RETRY_AFTER,
            )
        try:
            await ensure_reachable(self.producer)
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self.batches.publish(records)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("publishing live events failed: %r", exc)
            raise ServiceUnavailable(
                "The event log (Kafka) did not acknowledge every event in time; some may "
                "have been published. Send the same request again with the same "
                f"Idempotency-Key in {RETRY_AFTER} seconds: events already published are "
                "not counted twice.",
                code="kafka_unavailable",
                retry_after=RETRY_AFTER,
            ) from None
        finally:
            self.budget.give(taken)
