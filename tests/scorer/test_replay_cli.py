"""``leadvibe replay`` and ``leadvibe rescore`` as an operator runs them: a process, its
progress and summary on stderr, its exit status."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import asyncpg
import pytest

from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.scorer.helpers import event, publish
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("scorer")]


async def _leadvibe(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "leadvibe.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_an_unknown_unit_is_refused_with_nothing_done(settings: Settings) -> None:
    status, _, stderr = await _leadvibe(settings, "replay", "--unit", "ou_nobody")
    assert status == 1
    assert stderr.strip() == (
        "leadvibe replay: no unit 'ou_nobody'; 'leadvibe unit list' shows every unit"
    )


async def test_rescore_shows_its_progress_and_a_summary(
    settings: Settings, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    unit = tenant.unit_id
    await publish(settings, [event(unit, "page_view", lead_id=f"ld_{n % 3}") for n in range(30)])
    await wait_for(lambda: pool.fetchval("SELECT count(*) FROM events"), until=lambda n: n == 30)

    status, stdout, stderr = await _leadvibe(settings, "rescore", "--unit", "marketing", "--json")

    assert status == 0, stderr
    lines = stderr.splitlines()
    assert any(line.startswith("rescore: reading: 30 records in ") for line in lines)
    assert any(line.startswith("rescore: switching: ") for line in lines)
    assert (
        "rescore: 1 unit(s): 3 leads, 30 events, 0 aliases, 0 alias conflicts, 0 imports" in lines
    )
    assert any(line.startswith("rescore: scores changed: 0 leads") for line in lines)
    summary = json.loads(stdout)
    assert summary["unit_id"] == unit
    assert (summary["units"], summary["totals"]["leads"], summary["totals"]["events"]) == (1, 3, 30)
    assert summary["totals"]["leads_rescored"] == 0
