"""The resources the gateway opens once, in its lifespan, and every endpoint uses."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer
from starlette.requests import Request

from ingest_gateway.import_store import Publisher
from leadvibe.settings import Settings


@dataclass(frozen=True)
class GatewayState:
    settings: Settings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    publisher: Publisher
    """This process, as the publisher of the imports it begins (ingest_gateway.recovery)."""


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.state.gateway
    return state
