"""``GET /health`` (readiness) and ``GET /health/live`` (liveness).

Readiness says whether the gateway can do its work now: each dependency is checked, at
most :data:`CHECK_TIMEOUT` seconds each and side by side, and named in the answer:

    200 {"status": "ok", "checks": {"postgres": {"ok": true, "detail": "..."},
                                    "kafka": {"ok": true, "detail": "..."}}}
    503 {"status": "unavailable", "checks": {...the one down with "ok": false...}}

Liveness only says the process answers (its event loop runs); it touches no dependency,
so an orchestrator that restarts on a failed liveness never restarts a gateway because
Postgres or Kafka is down, which a restart would not fix. Use readiness to route traffic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import asyncpg
from aiokafka import AIOKafkaProducer
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ingest_gateway.database import RETRY_AFTER, is_outage
from ingest_gateway.publishing import GatewayProducer
from ingest_gateway.state import state_of

log = logging.getLogger(__name__)

CHECK_TIMEOUT: Final = 2.0
"""Seconds each dependency has to answer a readiness check."""

Check = dict[str, bool | str]


def _failed(what: str, exc: BaseException) -> Check:
    # The type names the failure for an operator; the message (addresses) goes to the log.
    reason = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
    log.warning("readiness: %s is down: %r", what, exc)
    return {"ok": False, "detail": f"{what} does not answer ({reason})"}


async def check_postgres(pool: asyncpg.Pool) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await pool.fetchval("SELECT 1")
    except Exception as exc:
        if is_outage(exc) or isinstance(exc, TimeoutError):
            await pool.expire_connections()  # the next request connects afresh
        return _failed("Postgres", exc)
    return {"ok": True, "detail": "Postgres answers"}


async def check_kafka(producer: AIOKafkaProducer) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            if isinstance(producer, GatewayProducer):
                await producer.ensure_started()
            metadata = await producer.client.fetch_all_metadata()
    except Exception as exc:
        return _failed("Kafka", exc)
    return {"ok": True, "detail": f"Kafka answers ({len(metadata.brokers())} broker(s))"}


async def readiness(request: Request) -> JSONResponse:
    """GET /health: 200 when Postgres and Kafka both answer, else 503 naming what is down."""
    state = state_of(request)
    postgres, kafka = await asyncio.gather(check_postgres(state.pool), check_kafka(state.producer))
    checks = {"postgres": postgres, "kafka": kafka}
    if all(check["ok"] for check in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    return JSONResponse(
        {"status": "unavailable", "checks": checks},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER)},
    )


async def liveness(request: Request) -> JSONResponse:
    """GET /health/live: 200 while the process answers; no dependency is asked."""
    return JSONResponse({"status": "ok"})


ROUTES: list[Route] = [
    Route("/health", readiness, methods=["GET"]),
    Route("/health/live", liveness, methods=["GET"]),
]
