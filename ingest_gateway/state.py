"""The resources the gateway opens once, in its lifespan, and every endpoint uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaProducer
from starlette.requests import Request

from ingest_gateway.import_store import Publisher
from ingest_gateway.live import LiveEvents
from ingest_gateway.upload_slots import SharedSlots
from leadvibe.settings import Settings
from leadvibe.tenancy import TokenCache


@dataclass(frozen=True)
class GatewayState:
    settings: Settings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    publisher: Publisher
    """This process, as the publisher of the imports it begins (ingest_gateway.recovery)."""
    uploads: SharedSlots = field(init=False)
    """The import slots, sized by the settings."""
    tokens: TokenCache = field(init=False)
    """Principals of recently used tokens (``token_cache_seconds``)."""
    live: LiveEvents = field(init=False)
    """POST /ingest's way to Kafka: shared batches, bounded."""

    def __post_init__(self) -> None:
        settings = self.settings
        slots = SharedSlots(
            settings.database_url,
            per_unit=settings.uploads_per_unit,
            in_all=settings.uploads_in_all,
        )
        object.__setattr__(self, "uploads", slots)
        object.__setattr__(self, "tokens", TokenCache(settings.token_cache_seconds))
        live = LiveEvents(
            self.producer,
            settings.topics.events,
            buffer_bytes=settings.ingest_buffer_bytes,
            wait=settings.ingest_wait_seconds,
        )
        object.__setattr__(self, "live", live)


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.state.gateway
    return state
