"""A small load on POST /ingest through the real server, on loopback: two gateway processes
on one port (as ``make run`` runs them on two cores), bench.load's clients for a few
seconds. Every answer is a 202, and every accepted event is in the topic exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load import run_load
from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.gateway import gateway_process
from tests.ingest_gateway.helpers import published, times_published

pytestmark = pytest.mark.integration

EVENTS = 10
BODY = json.dumps(
    {"events": [{"lead_id": f"ld_{n}", "event_type": "page_view"} for n in range(EVENTS)]}
).encode()


async def test_a_moderate_load_gets_no_5xx_and_loses_nothing(
    settings: Settings, tenant: Tenant, tmp_path: Path
) -> None:
    async with gateway_process(
        settings, tmp_path / "gateway.log", LEADVIBE_GATEWAY_PROCESSES="2"
    ) as (_, client):
        result = await run_load(
            str(client.base_url.join("/ingest")),
            clients=8,
            seconds=3,
            method="POST",
            headers=[("Authorization", f"Bearer {tenant.token}")],
            body=BODY,
        )
    assert result.errors == 0, (dict(result.failures), result.sample_failure)
    assert result.ok > 0
    events = await published(settings)
    assert len(events) == result.ok * EVENTS
    assert max(times_published(events).values()) == 1
