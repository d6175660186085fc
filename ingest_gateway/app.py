"""The gateway's Starlette application: routes, error handlers, and the lifespan.

The lifespan opens the Postgres pool and the Kafka producer once and yields them as the
request state; every endpoint is a plain async function in the route list. The gateway
starts, and keeps running, whether or not Postgres and Kafka answer: a request that needs
one that is down answers 503 (``database_unavailable``, ``kafka_unavailable``) with
Retry-After, ``GET /health`` says which is down, and both reconnect on their own once back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute

from ingest_gateway import (
    docs_pages,
    health,
    imports,
    ingest,
    leads,
    org_units,
    rulesets,
    triggers,
)
from ingest_gateway.database import OUTAGES, open_gateway_pool, unavailable_response
from ingest_gateway.errors import ApiError, api_error_response, http_error_response
from ingest_gateway.publishing import open_gateway_producer
from ingest_gateway.recovery import new_publisher, sweep_abandoned
from ingest_gateway.state import GatewayState
from leadvibe.settings import Settings


def routes() -> list[BaseRoute]:
    return [
        *health.ROUTES,
        *docs_pages.ROUTES,
        *org_units.ROUTES,
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
        publisher = new_publisher(settings.gateway_instance)
        async with (
            open_gateway_pool(settings.database_url) as pool,
            open_gateway_producer(settings.kafka_bootstrap_servers) as producer,
        ):
            sweeper = asyncio.create_task(sweep_abandoned(pool, publisher))
            try:
                yield {
                    "gateway": GatewayState(
                        settings=settings, pool=pool, producer=producer, publisher=publisher
                    )
                }
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper

    return Starlette(
        routes=routes(),
        exception_handlers={
            ApiError: api_error_response,
            HTTPException: http_error_response,
            **dict.fromkeys(OUTAGES, unavailable_response),
        },
        lifespan=lifespan,
    )
