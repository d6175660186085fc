"""The gateway's Starlette application: routes, error handlers, and the lifespan.

The lifespan opens the Postgres pool and the Kafka producer once and yields them as the
request state; every endpoint is a plain async function in the route list. The gateway
starts even when Kafka does not answer: publishing then answers 503 until it does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ingest_gateway import imports, ingest, leads, rulesets, triggers
from ingest_gateway.auth import set_active_org_unit
from ingest_gateway.errors import ApiError, api_error_response
from ingest_gateway.publishing import open_gateway_producer
from ingest_gateway.state import GatewayState, state_of
from leadvibe.db import open_pool
from leadvibe.settings import Settings


async def health(request: Request) -> JSONResponse:
    """GET /health: 200 once the database answers."""
    await state_of(request).pool.fetchval("SELECT 1")
    return JSONResponse({"status": "ok"})


def routes() -> list[Route]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/org-units/active", set_active_org_unit, methods=["POST"]),
        *imports.ROUTES,
        *ingest.ROUTES,
        *leads.ROUTES,
        *rulesets.ROUTES,
        *triggers.ROUTES,
    ]


def create_app(settings: Settings | None = None) -> Starlette:
    """The gateway app; settings are read from the environment when not given."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, GatewayState]]:
        async with (
            open_pool(settings.database_url) as pool,
            open_gateway_producer(settings.kafka_bootstrap_servers) as producer,
        ):
            yield {"gateway": GatewayState(settings=settings, pool=pool, producer=producer)}

    return Starlette(
        routes=routes(),
        exception_handlers={ApiError: api_error_response},
        lifespan=lifespan,
    )
