"""``GET /health`` (readiness) and ``GET /health/live`` (liveness).

Readiness says whether the gateway can do its work now: each dependency is checked (at
most :data:`leadvibe.health.CHECK_TIMEOUT` seconds each, side by side) and named in the
answer, in the shape every service's ``/health`` has (:mod:`leadvibe.health`):

    200 {"status": "ok", "checks": {"postgres": {"ok": true, "detail": "..."},
                                    "kafka": {"ok": true, "detail": "..."}}}
    503 {"status": "unavailable", "checks": {...the one down with "ok": false...}}

Liveness only says the process answers (its event loop runs); it touches no dependency,
so an orchestrator that restarts on a failed liveness never restarts a gateway because
Postgres or Kafka is down, which a restart would not fix. Use readiness to route traffic.
"""

from __future__ import annotations

import asyncio
from functools import partial

import asyncpg
from aiokafka import AIOKafkaProducer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest_gateway.database import RETRY_AFTER
from ingest_gateway.publishing import GatewayProducer
from ingest_gateway.state import state_of
from leadvibe.health import Check, health_body, probe


async def check_postgres(pool: asyncpg.Pool) -> Check:
    check = await probe("Postgres", partial(pool.fetchval, "SELECT 1"))
    if not check.ok:
        await pool.expire_connections()  # the next request connects afresh
    return check


async def check_kafka(producer: AIOKafkaProducer) -> Check:
    async def metadata() -> None:
        if isinstance(producer, GatewayProducer):
            await producer.ensure_started()
        await producer.client.fetch_all_metadata()

    return await probe("Kafka", metadata)


async def readiness(request: Request) -> Response:
    """GET /health: 200 when Postgres and Kafka both answer, else 503 naming what is down."""
    state = state_of(request)
    postgres, kafka = await asyncio.gather(check_postgres(state.pool), check_kafka(state.producer))
    status, body = health_body({"postgres": postgres, "kafka": kafka})
    headers = {"Retry-After": str(RETRY_AFTER)} if status != 200 else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def liveness(request: Request) -> JSONResponse:
    """GET /health/live: 200 while the process answers; no dependency is asked."""
    return JSONResponse({"status": "ok"})


ROUTES: list[Route] = [
    Route("/health", readiness, methods=["GET"]),
    Route("/health/live", liveness, methods=["GET"]),
]
