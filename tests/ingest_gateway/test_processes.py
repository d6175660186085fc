"""Several gateway processes on one port: each its own instance, restarted alone when it
dies, and the import slots counted across them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ingest_gateway.errors import TooManyRequests
from ingest_gateway.processes import WORKER_ENV, instance_of
from ingest_gateway.upload_slots import SharedSlots
from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.gateway import gateway_process
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def copies_of(parent: int) -> dict[int, tuple[int, str]]:
    """Copy number → (pid, gateway instance) of the supervisor's children."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) != parent:
                continue
            env = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_text().split("\0")
                if "=" in item
            )
        except (OSError, ValueError):
            continue
        if WORKER_ENV in env:
            found[int(env[WORKER_ENV])] = (int(entry.name), env["LEADVIBE_GATEWAY_INSTANCE"])
    return found


async def test_each_copy_is_an_instance_of_its_own_and_a_dead_one_is_restarted_alone(
    settings: Settings, tenant: Tenant, tmp_path: Path
) -> None:
    async with gateway_process(
        settings,
        tmp_path / "gateway.log",
        LEADVIBE_GATEWAY_PROCESSES="2",
        LEADVIBE_GATEWAY_INSTANCE="gw",
    ) as (process, client):
        copies = await wait_for(
            lambda: _copies(process.pid), until=lambda c: len(c) == 2, what="two copies"
        )
        assert {instance for _, instance in copies.values()} == {
            instance_of("gw", 1),
            instance_of("gw", 2),
        }
        os.kill(copies[1][0], signal.SIGKILL)
        restarted = await wait_for(
            lambda: _copies(process.pid),
            until=lambda c: len(c) == 2 and c[1][0] != copies[1][0],
            timeout=30,
            what="copy 1 started again",
        )
        assert restarted[2] == copies[2]  # the other one ran on
        response = await client.get("/leads?limit=1", headers=tenant.headers)
        assert response.status_code == 200, response.text
    assert "process 1 exited with status -9" in (tmp_path / "gateway.log").read_text()


async def _copies(parent: int) -> dict[int, tuple[int, str]]:
    return copies_of(parent)


async def test_the_import_slots_hold_across_processes(settings: Settings) -> None:
    # Two processes' slots over one database: a unit's second import, and any import past
    # the bound in all, is refused whichever process it reaches.
    one = SharedSlots(settings.database_url, per_unit=1, in_all=2)
    two = SharedSlots(settings.database_url, per_unit=1, in_all=2)
    async with one.take("ou_a"):
        with pytest.raises(TooManyRequests, match="Your unit has 1 imports"):
            async with two.take("ou_a"):
                pass
        async with two.take("ou_b"):
            with pytest.raises(TooManyRequests, match="working on 2 imports"):
                async with two.take("ou_c"):
                    pass
    async with two.take("ou_a"):  # given back when the first import ended
        pass
