"""POST /import's bounds on work, through the real app: rows, header, concurrent uploads,
slow bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest

from ingest_gateway import csv_rows
from leadvibe.settings import Settings
from tests.conftest import Tenant, make_tenant
from tests.gateway import gateway_client
from tests.ingest_gateway.helpers import BOUNDARY, MULTIPART, multipart, published_count
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


async def upload(gateway: httpx.AsyncClient, tenant: Tenant, data: bytes) -> httpx.Response:
    return await gateway.post(
        "/import", headers=tenant.headers, files={"file": ("events.csv", data)}
    )


# -- rows and header ----------------------------------------------------------------------


async def test_more_rows_than_the_limit_is_413_naming_it_and_publishes_nothing(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_rows, "ROW_LIMIT", 20)
    fits = b"lead_id,event_type\n" + b"ld_1,open\n" * 19
    assert (await upload(gateway, tenant, fits)).json()["imported"] == 19
    response = await upload(gateway, tenant, fits + b"ld_2,open\n")
    assert response.status_code == 413
    assert response.json() == {
        "error": "too_many_rows",
        "detail": "The file has more than 20 rows (the header and blank rows count); split it "
        "into smaller files and import each.",
    }
    assert await published_count(settings) == 19


async def test_a_header_over_the_limit_is_400(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    header = b"lead_id,event_type," + b",".join(b"c%d" % i for i in range(1000))
    response = await upload(gateway, tenant, header + b"\nld_1,open\n")
    assert response.status_code == 400
    assert response.json()["error"] == "header_too_large"
    assert "at most 1,000 columns" in response.json()["detail"]


async def test_ignored_columns_are_listed_up_to_100_names_of_100_characters(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    names = [f"column {i}" for i in range(150)]
    names[0] = "n" * 300
    header = ",".join(["lead_id", "event_type", *names]).encode()
    response = await upload(gateway, tenant, header + b"\nld_1,open\n")
    body = response.json()
    assert response.status_code == 202
    assert body["ignored_columns"] == ["n" * 99 + "…", *names[1:100]]
    assert body["ignored_columns_truncated"] is True
    shown = (await gateway.get(f"/imports/{body['import_id']}", headers=tenant.headers)).json()
    assert shown["ignored_columns"] == body["ignored_columns"]
    assert shown["ignored_columns_truncated"] is True


async def test_a_few_ignored_columns_say_nothing_of_truncation(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = (await upload(gateway, tenant, b"lead_id,event_type,notes\nld_1,open,x\n")).json()
    assert body["ignored_columns"] == ["notes"]
    assert "ignored_columns_truncated" not in body


# -- concurrent uploads ---------------------------------------------------------------------


class HeldUpload:
    """An upload whose body stops after its first part until released: it holds a slot."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.task = asyncio.create_task(
            client.post("/import", content=self.body(), headers={**tenant.headers, **MULTIPART})
        )

    async def body(self) -> AsyncIterator[bytes]:
        head = multipart(("file", "events.csv", b"lead_id,event_type\nld_1,open\n"), close=False)
        yield head[: -len(b"\r\n")]
        self.started.set()
        await self.release.wait()
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    async def finish(self) -> httpx.Response:
        self.release.set()
        return await self.task


@pytest.fixture
async def two_slots_one_per_unit(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(replace(settings, uploads_per_unit=1, uploads_in_all=2)) as client:
        yield client


async def test_a_units_uploads_beyond_its_slots_are_429_with_retry_after(
    two_slots_one_per_unit: httpx.AsyncClient, tenant: Tenant
) -> None:
    client = two_slots_one_per_unit
    held = HeldUpload(client, tenant)
    await asyncio.wait_for(held.started.wait(), timeout=10)
    response = await upload(client, tenant, b"lead_id,event_type\nld_2,open\n")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"] == "too_many_uploads"
    assert response.json()["detail"].startswith("Your unit has 1 imports in progress")
    assert (await held.finish()).status_code == 202
    # The slot is free again once the first upload is answered.
    assert (await upload(client, tenant, b"lead_id,event_type\nld_2,open\n")).status_code == 202


async def test_uploads_beyond_the_gateways_slots_are_429_for_every_unit(
    two_slots_one_per_unit: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    client = two_slots_one_per_unit
    others = [await make_tenant(pool, "acme", f"unit {i}") for i in range(2)]
    held = [HeldUpload(client, tenant), HeldUpload(client, others[0])]
    for one in held:
        await asyncio.wait_for(one.started.wait(), timeout=10)
    response = await upload(client, others[1], b"lead_id,event_type\nld_2,open\n")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"
    assert "working on 2 imports" in response.json()["detail"]
    assert [(await one.finish()).status_code for one in held] == [202, 202]


# -- slow bodies ----------------------------------------------------------------------------


async def test_an_upload_that_stops_sending_is_408_and_publishes_nothing(
    settings: Settings, tenant: Tenant
) -> None:
    stalled = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        head = multipart(("file", "events.csv", b"lead_id,event_type\nld_1,open\n"), close=False)
        yield head
        await stalled.wait()  # never set: the client goes quiet
        yield b""  # pragma: no cover

    async with gateway_client(replace(settings, body_idle_timeout=0.3)) as client:
        response = await client.post(
            "/import", content=body(), headers={**tenant.headers, **MULTIPART}
        )
    assert response.status_code == 408
    assert response.headers["Connection"] == "close"
    assert response.json()["error"] == "body_timeout"
    assert "sent nothing for 0.3 seconds" in response.json()["detail"]
    assert await published_count(settings) == 0


async def test_an_upload_that_trickles_past_the_body_deadline_is_408(
    settings: Settings, tenant: Tenant
) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield multipart(("file", "events.csv", b"lead_id,event_type\n"), close=False)
        while True:  # a row every 50 ms, each well within the idle deadline
            await asyncio.sleep(0.05)
            sent += 1
            yield b"ld_1,open\n"

    async with gateway_client(replace(settings, body_idle_timeout=5.0, body_timeout=0.5)) as client:
        response = await client.post(
            "/import", content=body(), headers={**tenant.headers, **MULTIPART}
        )
    assert response.status_code == 408
    assert "took over 0.5 seconds to send the body" in response.json()["detail"]
    assert sent < 100  # stopped near the deadline, not at the end of a body that never ends
    assert await published_count(settings) == 0


async def test_the_upload_slot_is_given_back_after_a_408(
    settings: Settings, tenant: Tenant
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield multipart(("file", "events.csv", b"lead_id,event_type\n"), close=False)
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    async with gateway_client(
        replace(settings, body_idle_timeout=0.2, uploads_per_unit=1)
    ) as client:
        response = await client.post(
            "/import", content=body(), headers={**tenant.headers, **MULTIPART}
        )
        assert response.status_code == 408

        async def status() -> int:
            return (await upload(client, tenant, b"lead_id,event_type\nld_1,open\n")).status_code

        await wait_for(status, until=lambda code: code == 202, what="a free upload slot")
