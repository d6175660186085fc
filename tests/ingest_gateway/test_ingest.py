"""POST /ingest through the real app and Kafka: the same validation as CSV rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ingest_gateway.events import IDENTITY_REQUIRED
from leadvibe.settings import Settings
from schemas import Alias
from schemas.ids import derived_id
from tests.conftest import Tenant
from tests.ingest_gateway.helpers import published, published_count

pytestmark = pytest.mark.integration


async def ingest(
    gateway: httpx.AsyncClient, tenant: Tenant, body: Any, *, key: str | None = None
) -> httpx.Response:
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key else {})}
    return await gateway.post("/ingest", json=body, headers=headers)


async def test_one_event(gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings) -> None:
    response = await ingest(
        gateway,
        tenant,
        {
            "lead_id": "ld_abc123",
            "event_type": "page_view",
            "timestamp": "2025-06-15T12:30:00+02:00",
            "metadata": {"url": "/pricing"},
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {"accepted": 1, "event_ids": body["event_ids"]}
    [(key, event)] = await published(settings)
    assert key == tenant.unit_id.encode()  # keyed by unit: one writer per unit
    assert event.event_id == body["event_ids"][0]
    assert (event.unit_id, event.source, event.import_id, event.row) == (
        tenant.unit_id,
        "api",
        None,
        None,
    )
    assert event.timestamp == datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
    assert event.metadata == {"url": "/pricing"}


async def test_a_batch_with_aliases_in_order(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    events = [
        {"aliases": [{"kind": "email", "value": " Jane@Acme.com "}], "event_type": "open"},
        {"lead_id": "ld_1", "aliases": [{"kind": "cookie", "value": "c1"}], "event_type": "a"},
        {"lead_id": "ld_2", "event_type": "b"},
    ]
    response = await ingest(gateway, tenant, {"events": events})
    assert response.status_code == 202
    ids = response.json()["event_ids"]
    assert len(set(ids)) == 3
    by_id = {e.event_id: (k, e) for k, e in await published(settings)}
    key, first = by_id[ids[0]]
    assert key == tenant.unit_id.encode()  # no personal data in the key
    assert (first.lead_id, first.aliases) == (None, (Alias("email", "Jane@Acme.com"),))
    assert by_id[ids[1]][1].aliases == (Alias("cookie", "c1"),)
    assert by_id[ids[2]][1].lead_id == "ld_2"


async def test_an_event_without_timestamp_happened_when_it_was_received(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    before = datetime.now(UTC)
    assert (await ingest(gateway, tenant, {"lead_id": "x", "event_type": "a"})).status_code == 202
    [(_, event)] = await published(settings)
    assert before <= event.timestamp <= datetime.now(UTC)


async def test_a_key_gives_the_same_ids_again(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    body = {"events": [{"lead_id": "a", "event_type": "x"}, {"lead_id": "b", "event_type": "y"}]}
    first = (await ingest(gateway, tenant, body, key="live-1")).json()["event_ids"]
    again = (await ingest(gateway, tenant, body, key="live-1")).json()["event_ids"]
    assert (
        first == again == [derived_id(tenant.unit_id, "live-1", "ingest", str(i)) for i in (0, 1)]
    )
    # Both published: the scorer counts an event id once (DESIGN.md decision 2).
    assert [e.event_id for _, e in await published(settings)].count(first[0]) == 2


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"event_type": "open"},
            IDENTITY_REQUIRED,
        ),
        ({"lead_id": "x"}, "event_type: required"),
        ({"lead_id": "x", "event_type": " "}, "event_type: required"),
        (
            {"lead_id": "x", "event_type": "a", "timestamp": "2025-13-01"},
            "timestamp: not RFC 3339: '2025-13-01'",
        ),
        ({"lead_id": 7, "event_type": "a"}, "lead_id: must be a string"),
        (
            {"lead_id": "x", "event_type": "a", "timestamp": 1718447400},
            "timestamp: must be a string",
        ),
        (
            {"aliases": [{"kind": "fax", "value": "1"}], "event_type": "a"},
            "aliases[0].kind: must be one of external_id, email, phone, social, cookie; got 'fax'",
        ),
        ({"aliases": [{"kind": "email"}], "event_type": "a"}, "aliases[0].value: must be a string"),
        (
            {"aliases": "a@b.c", "event_type": "a"},
            'aliases: must be a list of {"kind": ..., "value": ...}',
        ),
        ({"lead_id": "x", "event_type": "a", "metadata": [1]}, "metadata: must be a JSON object"),
        ("page_view", "an event must be a JSON object"),
    ],
)
async def test_the_same_errors_as_csv_rows(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, event: Any, error: str
) -> None:
    response = await ingest(
        gateway, tenant, {"events": [{"lead_id": "ok", "event_type": "a"}, event]}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_events",
        "detail": f"1 of 2 events are invalid, so none was accepted; events[1]: {error}.",
        "errors": [{"index": 1, "error": error}],
    }
    assert await published_count(settings) == 0


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"lead_id": "ld\x00", "event_type": "a"},
            "lead_id: holds a control character (U+0000) at position 3; remove it",
        ),
        (
            {"lead_id": "x", "event_type": "\x00"},
            "event_type: holds a control character (U+0000) at position 1; remove it",
        ),
        (
            {"aliases": [{"kind": "email", "value": "a\x00@b.c"}], "event_type": "a"},
            "email: holds a control character (U+0000) at position 2; remove it",
        ),
        (
            {"lead_id": "x", "event_type": "a", "metadata": {"k": {"deep": ["\x00"]}}},
            "metadata.k.deep[0]: holds a control character (U+0000) at position 1; remove it",
        ),
        (
            {"lead_id": "x", "event_type": "a", "metadata": {"\x00": 1}},
            "metadata: the key '\\x00' holds a control character (U+0000) at position 1; remove it",
        ),
        (
            {
                "lead_id": "x",
                "aliases": [{"kind": "cookie", "value": f"c{i}"} for i in range(21)],
                "event_type": "a",
            },
            "aliases: 21 aliases; an event has at most 20",
        ),
        (
            {"aliases": [{"kind": "phone", "value": "n/a"}], "event_type": "a"},
            "phone: 'n/a' names no one (it has no digits 0-9); an event needs lead_id or an "
            "alias that identifies its lead",
        ),
    ],
)
async def test_what_the_scorer_could_not_store_is_refused(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, event: Any, error: str
) -> None:
    response = await ingest(
        gateway, tenant, {"events": [{"lead_id": "ok", "event_type": "a"}, event]}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [{"index": 1, "error": error}]
    assert await published_count(settings) == 0


async def test_metadata_text_keeps_line_breaks_and_tabs(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    metadata = {"note": "first line\r\nsecond\tline", "del": "\x7f"}
    body = {"lead_id": "x", "event_type": "a", "metadata": metadata}
    assert (await ingest(gateway, tenant, body)).status_code == 202
    [(_, event)] = await published(settings)
    assert event.metadata == metadata


async def test_metadata_up_to_100_kb(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    def event(size: int) -> dict[str, Any]:
        padding = "x" * (size - len('{"p":""}'))
        return {"lead_id": "x", "event_type": "a", "metadata": {"p": padding}}

    assert (await ingest(gateway, tenant, event(100 * 1024))).status_code == 202
    response = await ingest(gateway, tenant, {"events": [event(10), event(100 * 1024 + 1)]})
    assert response.status_code == 413
    assert response.json()["error"] == "metadata_too_large"
    assert response.json()["detail"].startswith("events[1].metadata: 102401 bytes")
    assert await published_count(settings) == 1


async def test_up_to_1000_events(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    events = [{"lead_id": f"ld_{i}", "event_type": "a"} for i in range(1000)]
    response = await ingest(gateway, tenant, {"events": events})
    assert response.status_code == 202
    assert response.json()["accepted"] == 1000
    too_many = await ingest(gateway, tenant, {"events": [*events, events[0]]})
    assert too_many.status_code == 413
    assert too_many.json()["error"] == "too_many_events"
    empty = await ingest(gateway, tenant, {"events": []})
    assert empty.status_code == 400
    assert await published_count(settings) == 1000


async def test_a_unit_id_in_the_body_changes_nothing(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    body = {"lead_id": "x", "event_type": "a", "unit_id": "ou_someone_else", "source": "import"}
    assert (await ingest(gateway, tenant, body)).status_code == 202
    [(_, event)] = await published(settings)
    assert (event.unit_id, event.source) == (tenant.unit_id, "api")


async def test_requests_that_are_not_events(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await gateway.post("/ingest", json={"lead_id": "x"})).status_code == 401
    not_json = await gateway.post(
        "/ingest", content=b"lead_id=x", headers={**tenant.headers, "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415
    broken = await gateway.post(
        "/ingest", content=b"{", headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["error"] == "invalid_json"
