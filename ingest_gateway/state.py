"""The resources the gateway opens once, in its lifespan, and every endpoint uses."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer
from starlette.requests import Request

from leadvibe.settings import Settings


@dataclass(frozen=True)
class GatewayState:
    settings: Settings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.state.gateway
    return state
