"""Imports a gateway left half-done: found and marked ``failed`` so that none stays
``publishing`` forever (issue 12, item 5).

Every gateway process has a :class:`~ingest_gateway.import_store.Publisher`: its instance
name (``LEADVIBE_GATEWAY_INSTANCE``, host:port by default) and a boot id new at each start.
At start, and every :data:`SWEEP_INTERVAL` seconds after, it marks failed (with the reason
and what to do) every import still ``publishing`` that

- a previous process of the same instance began: only one process holds an instance name
  at a time, so that one has ended (a crash, kill -9, SIGTERM mid-publish); this is what
  marks them at the next start;
- any gateway began more than :data:`STALE_AFTER` seconds ago: publishing is bounded
  (``publishing.CONNECT_TIMEOUT`` + ``PUBLISH_TIMEOUT``) and a live publisher always ends
  it in completed or failed, so such an import's publisher is gone, even one on a host
  that never comes back.

A retry with the import's Idempotency-Key then publishes the same event ids again and
completes it; the scorer counts each id once (DESIGN.md decision 3).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import asyncpg

from ingest_gateway import import_store
from ingest_gateway.database import is_outage
from ingest_gateway.import_store import Publisher
from ingest_gateway.publishing import CONNECT_TIMEOUT, PUBLISH_TIMEOUT
from schemas.ids import sortable_id

log = logging.getLogger(__name__)

SWEEP_INTERVAL: Final = 30.0
"""Seconds between two sweeps for abandoned imports."""
STALE_AFTER: Final = 3 * (CONNECT_TIMEOUT + PUBLISH_TIMEOUT)
"""Seconds after which a publishing import has no live publisher, whoever began it."""
RETRY_INTERVAL: Final = 2.0
"""Seconds between tries while the database does not answer."""


def new_publisher(instance: str) -> Publisher:
    """This process's publisher: the instance name, and a boot id of its own."""
    return Publisher(instance=instance, boot=sortable_id("boot_"))


async def sweep_once(pool: asyncpg.Pool, publisher: Publisher) -> int:
    """Mark the abandoned imports failed, logging each; return how many."""
    marked = await import_store.fail_abandoned(pool, publisher, stale_after=STALE_AFTER)
    for unit_id, import_id in marked:
        log.warning(
            "import %s of unit %s was left publishing by a gateway that stopped; marked failed",
            import_id,
            unit_id,
            extra={"unit": unit_id, "import_id": import_id},
        )
    return len(marked)


async def sweep_abandoned(pool: asyncpg.Pool, publisher: Publisher) -> None:
    """Sweep at once and then every SWEEP_INTERVAL, until cancelled; never raises.

    While the database does not answer, it tries every RETRY_INTERVAL (saying so once).
    """
    waiting = False
    while True:
        try:
            await sweep_once(pool, publisher)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_outage(exc):
                log.exception("abandoned imports: the sweep failed")
            elif not waiting:
                log.info("abandoned imports: sweeping once the database answers (%s)", exc)
            waiting = True
            await asyncio.sleep(RETRY_INTERVAL)
            continue
        waiting = False
        await asyncio.sleep(SWEEP_INTERVAL)
