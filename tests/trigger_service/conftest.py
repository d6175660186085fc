"""Fixtures of the trigger service's tests: a webhook receiver on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.trigger_service.receiver import Receiver, running_receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver
