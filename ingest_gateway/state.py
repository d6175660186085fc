"""The resources the gateway opens once, in its lifespan, and every endpoint uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaProducer
from starlette.requests import Request

from ingest_gateway.import_store import Publisher
from ingest_gateway.upload_slots import UploadSlots
from leadvibe.settings import Settings


@dataclass(frozen=True)
class GatewayState:
    settings: Settings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    publisher: Publisher
    """This process, as the publisher of the imports it begins (ingest_gateway.recovery)."""
    uploads: UploadSlots = field(init=False)
    """The import slots, sized by the settings."""

    def __post_init__(self) -> None:
        slots = UploadSlots(
            per_unit=self.settings.uploads_per_unit, in_all=self.settings.uploads_in_all
        )
        object.__setattr__(self, "uploads", slots)


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.state.gateway
    return state
