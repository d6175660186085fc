"""POST /import and GET /imports/{id} through the real app, Kafka and Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from ingest_gateway import import_store, imports
from ingest_gateway.app import create_app
from ingest_gateway.errors import ServiceUnavailable
from ingest_gateway.idempotency import import_event_ids
from leadvibe.settings import Settings
from schemas import Alias
from schemas.ids import derived_id
from tests.conftest import Tenant, make_tenant
from tests.ingest_gateway.helpers import (
    MULTIPART,
    multipart,
    published,
    published_count,
    times_published,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

# The seed page's two example files, verbatim.
BY_LEAD_ID = b"""lead_id,event_type,timestamp
ld_abc123,page_view,2025-06-15T10:30:00Z
ld_abc123,email_open,2025-06-16T14:00:00Z
ld_def456,demo_request,2025-06-20T09:00:00Z
"""

BY_EMAIL = b"""email,event_type,timestamp
jane@acme.com,webinar_attend,2025-07-01T11:00:00Z
bob@example.com,form_submit,2025-07-02T15:30:00Z
"""


async def upload(
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    data: bytes,
    *,
    params: dict[str, str] | None = None,
    key: str | None = None,
) -> httpx.Response:
    """The page's ``curl -F "file=@events.csv"``."""
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key else {})}
    return await gateway.post(
        "/import", params=params, headers=headers, files={"file": ("events.csv", data)}
    )


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["imported", "errors", "import_id", "error_rows", "ignored_columns"]
    return body


async def imports_recorded(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM imports")
    return count


# -- the page's examples ------------------------------------------------------------------


async def test_the_pages_lead_id_example(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    body = accepted(await upload(gateway, tenant, BY_LEAD_ID))
    assert body == {
        "imported": 3,
        "errors": 0,
        "import_id": body["import_id"],
        "error_rows": [],
        "ignored_columns": [],
    }
    assert body["import_id"].startswith("imp_")
    events = await published(settings)
    assert sorted((e.row, e.lead_id, e.event_type) for _, e in events) == [
        (2, "ld_abc123", "page_view"),
        (3, "ld_abc123", "email_open"),
        (4, "ld_def456", "demo_request"),
    ]
    for key, event in events:
        assert key == tenant.unit_id.encode()  # keyed by unit: one writer per unit
        assert event.unit_id == tenant.unit_id
        assert (event.source, event.skip_triggers, event.import_id) == (
            "import",
            False,
            body["import_id"],
        )


async def test_the_pages_email_example_with_skip_triggers(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    body = accepted(await upload(gateway, tenant, BY_EMAIL, params={"skip_triggers": "true"}))
    assert (body["imported"], body["errors"]) == (2, 0)
    events = sorted(await published(settings), key=lambda ke: ke[1].row or 0)
    assert [(k, e.lead_id, e.aliases, e.skip_triggers) for k, e in events] == [
        (
            tenant.unit_id.encode(),  # keyed by unit: no e-mail in the key
            None,
            (Alias("email", "jane@acme.com"),),
            True,
        ),
        (
            tenant.unit_id.encode(),
            None,
            (Alias("email", "bob@example.com"),),
            True,
        ),
    ]


# -- skip_triggers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"), [("TRUE", True), ("1", True), ("False", False), ("0", False)]
)
async def test_skip_triggers_in_the_query(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, raw: str, value: bool
) -> None:
    accepted(await upload(gateway, tenant, BY_LEAD_ID, params={"skip_triggers": raw}))
    assert {e.skip_triggers for _, e in await published(settings)} == {value}


@pytest.mark.parametrize("where", ["before", "after"])
async def test_skip_triggers_as_a_form_field_before_or_after_the_file(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, where: str
) -> None:
    flag = ("skip_triggers", None, b"true")
    file = ("file", "events.csv", BY_LEAD_ID)
    body = multipart(*([flag, file] if where == "before" else [file, flag]))
    response = await gateway.post("/import", content=body, headers={**tenant.headers, **MULTIPART})
    assert accepted(response)["imported"] == 3
    assert {e.skip_triggers for _, e in await published(settings)} == {True}


async def test_skip_triggers_given_in_query_and_form_must_agree(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    body = multipart(("file", "events.csv", BY_LEAD_ID), ("skip_triggers", None, b"false"))
    response = await gateway.post(
        "/import?skip_triggers=true", content=body, headers={**tenant.headers, **MULTIPART}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "conflicting_skip_triggers"
    agreeing = multipart(("file", "events.csv", BY_LEAD_ID), ("skip_triggers", None, b"1"))
    response = await gateway.post(
        "/import?skip_triggers=true", content=agreeing, headers={**tenant.headers, **MULTIPART}
    )
    assert accepted(response)["imported"] == 3
    assert await published_count(settings) == 3


@pytest.mark.parametrize("where", ["query", "form"])
async def test_a_skip_triggers_that_is_not_a_boolean_says_what_is_allowed(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, where: str
) -> None:
    if where == "query":
        response = await upload(gateway, tenant, BY_LEAD_ID, params={"skip_triggers": "yes"})
    else:
        body = multipart(("skip_triggers", None, b"yes"), ("file", "events.csv", BY_LEAD_ID))
        response = await gateway.post(
            "/import", content=body, headers={**tenant.headers, **MULTIPART}
        )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_skip_triggers",
        "detail": f"skip_triggers ({where}): must be true, false, 1 or 0 (any case); got 'yes'.",
    }
    assert await published_count(settings) == 0


# -- rows that fail, columns ignored, GET /imports/{id} ---------------------------------------


async def test_bad_rows_are_counted_listed_and_do_not_stop_the_others(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    data = (
        b"lead_id,event_type,timestamp,Notes\r\n"
        b"ld_1,page_view,2025-06-15T10:30:00Z,ok\r\n"
        b",page_view,2025-06-15T10:30:00Z,no lead\r\n"
        b'ld_2,email_open,2025-13-01,"a note\r\non two lines"\r\n'
        b"ld_3,,2025-06-15T10:30:00Z,no type\r\n"
        b"\r\n"
        b"ld_4,demo_request,,default time\r\n"
    )
    body = accepted(await upload(gateway, tenant, data))
    assert body == {
        "imported": 2,
        "errors": 3,
        "import_id": body["import_id"],
        "error_rows": [
            {
                "row": 3,
                "error": "lead_id or an alias (external_id, email, phone, cookie, social): "
                "at least one is required",
            },
            {"row": 4, "error": "timestamp: not RFC 3339: '2025-13-01'"},
            {"row": 5, "error": "event_type: required"},
        ],
        "ignored_columns": ["Notes"],
    }
    assert sorted(e.row or 0 for _, e in await published(settings)) == [2, 7]

    detail = (await gateway.get(f"/imports/{body['import_id']}", headers=tenant.headers)).json()
    assert {k: detail[k] for k in ("status", "rows", "imported", "errors", "error_rows")} == {
        "status": "completed",
        "rows": 5,
        "imported": 2,
        "errors": 3,
        "error_rows": body["error_rows"],
    }
    assert detail["ignored_columns"] == ["Notes"]
    assert detail["skip_triggers"] is False
    assert detail["applied"] == 0  # no scorer runs in this test
    assert detail["completed_at"] >= detail["created_at"]


async def test_the_answer_lists_100_error_rows_and_get_lists_them_all(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    data = b"lead_id,event_type\n" + b"ld_1,\n" * 150 + b"ld_1,open\n"
    body = accepted(await upload(gateway, tenant, data))
    assert (body["imported"], body["errors"], len(body["error_rows"])) == (1, 150, 100)
    assert body["error_rows"][-1] == {"row": 101, "error": "event_type: required"}
    detail = (await gateway.get(f"/imports/{body['import_id']}", headers=tenant.headers)).json()
    assert [r["row"] for r in detail["error_rows"]] == list(range(2, 152))


async def test_get_shows_what_the_scorer_applied(
    gateway: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    body = accepted(await upload(gateway, tenant, BY_LEAD_ID))
    await pool.execute(
        "INSERT INTO import_progress VALUES ($1, $2, 2, now())", tenant.unit_id, body["import_id"]
    )
    detail = (await gateway.get(f"/imports/{body['import_id']}", headers=tenant.headers)).json()
    assert (detail["imported"], detail["applied"]) == (3, 2)
    assert detail["last_applied_at"] is not None


async def test_get_an_unknown_import_is_404(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await gateway.get("/imports/imp_nope", headers=tenant.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# -- whole-file refusals: 400, 401, 413, 415, and nothing published ----------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"lead_id,timestamp\nld_1,2025-06-15T10:30:00Z\n", "missing_column"),
        (b"event_type,timestamp\npage_view,2025-06-15T10:30:00Z\n", "missing_column"),
        (b"", "empty_file"),
        (b"\xef\xbb\xbf\r\n\r\n", "empty_file"),
        (b"lead_id,event_type\nld_1,open\nld_\xe9t\xe9,open\n", "not_utf8"),
        ("lead_id,event_type\nld_1,open\n".encode("utf-16"), "not_utf8"),
        (b"PK\x03\x04\x14\x00\x06\x00", "not_text"),
        (b"lead_id,event_type,Lead_ID\nld_1,open,ld_2\n", "duplicate_column"),
    ],
)
async def test_a_file_refused_whole_is_400_and_publishes_nothing(
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    pool: asyncpg.Pool,
    data: bytes,
    code: str,
) -> None:
    response = await upload(gateway, tenant, data)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["error", "detail"]
    assert body["error"] == code
    assert body["detail"].endswith(".")
    assert await published_count(settings) == 0
    assert await imports_recorded(pool) == 0


async def test_a_bad_byte_at_the_very_end_of_a_large_file_still_publishes_nothing(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    data = b"lead_id,event_type\n" + b"ld_1,page_view\n" * 50_000 + b"ld_2,caf\xe9\n"
    response = await upload(gateway, tenant, data)
    assert response.status_code == 400
    assert response.json()["error"] == "not_utf8"
    assert "line 50002" in response.json()["detail"]
    assert await published_count(settings) == 0


async def test_no_file_field_is_400(gateway: httpx.AsyncClient, tenant: Tenant) -> None:
    body = multipart(("skip_triggers", None, b"true"), ("upload", "events.csv", BY_LEAD_ID))
    response = await gateway.post("/import", content=body, headers={**tenant.headers, **MULTIPART})
    assert response.status_code == 400
    assert response.json()["error"] == "missing_file"
    assert "file=@events.csv" in response.json()["detail"]


async def test_a_file_sent_as_a_plain_field_is_still_the_file(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    # curl -F "file=<events.csv" sends the content without a filename.
    body = multipart(("file", None, BY_LEAD_ID))
    response = await gateway.post("/import", content=body, headers={**tenant.headers, **MULTIPART})
    assert accepted(response)["imported"] == 3


@pytest.mark.parametrize(
    "parts",
    [
        [("file", "a.csv", BY_LEAD_ID), ("file", "b.csv", BY_EMAIL)],
    ],
)
async def test_two_files_are_400(
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    parts: Sequence[tuple[str, str | None, bytes]],
) -> None:
    response = await gateway.post(
        "/import", content=multipart(*parts), headers={**tenant.headers, **MULTIPART}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_multipart"
    assert await published_count(settings) == 0


async def test_an_upload_cut_off_before_its_closing_boundary_is_400_and_publishes_nothing(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    body = multipart(("file", "events.csv", BY_LEAD_ID), close=False)
    response = await gateway.post("/import", content=body, headers={**tenant.headers, **MULTIPART})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_multipart"
    assert await published_count(settings) == 0


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/json", b'{"file": "lead_id,event_type"}'),
        ("text/csv", BY_LEAD_ID),
        (None, BY_LEAD_ID),
    ],
)
async def test_a_body_that_is_not_multipart_is_415(
    gateway: httpx.AsyncClient, tenant: Tenant, content_type: str | None, content: bytes
) -> None:
    headers = {**tenant.headers, **({"Content-Type": content_type} if content_type else {})}
    response = await gateway.post("/import", content=content, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert "multipart/form-data" in response.json()["detail"]


async def test_multipart_without_boundary_is_400(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Content-Type": "multipart/form-data"}
    response = await gateway.post("/import", content=b"x", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_multipart"


@pytest.mark.parametrize(
    "authorization", [None, "Token abc", "Bearer", "Bearer two words", "Bearer lv_unknown"]
)
async def test_without_a_valid_token_is_401(
    gateway: httpx.AsyncClient, settings: Settings, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await gateway.post(
        "/import", headers=headers, files={"file": ("events.csv", BY_LEAD_ID)}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert (await gateway.get("/imports/imp_x", headers=headers)).status_code == 401
    assert await published_count(settings) == 0


FILE_LIMIT = 10 * 1024 * 1024


def csv_of_size(size: int) -> tuple[bytes, int]:
    """A realistic CSV of exactly ``size`` bytes (the last row padded), and its data rows."""
    header = b"lead_id,email,event_type,timestamp,notes\r\n"
    row = b"ld_%07d,lead%07d@example.com,page_view,2025-%02d-%02dT%02d:%02d:00Z,\r\n"
    out = [header]
    total, n = len(header), 0
    while True:
        line = row % (n % 50_000, n % 50_000, n % 12 + 1, n % 28 + 1, n % 24, n % 60)
        if total + len(line) + 40 > size:
            break
        out.append(line)
        total += len(line)
        n += 1
    last = b"ld_last,,page_view,2025-06-15T10:30:00Z,"
    out.append(last + b"x" * (size - total - len(last) - 2) + b"\r\n")
    data = b"".join(out)
    assert len(data) == size
    return data, n + 1


async def test_a_10_mb_file_is_imported_whole(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    import time

    data, rows = csv_of_size(FILE_LIMIT)  # exactly the limit: accepted
    started = time.perf_counter()
    body = accepted(await upload(gateway, tenant, data, key="ten-mb"))
    elapsed = time.perf_counter() - started
    print(f"10 MB, {rows} rows: 202 after {elapsed:.2f} s, {rows / elapsed:,.0f} rows/s")
    assert (body["imported"], body["errors"]) == (rows, 0)
    assert await published_count(settings) == rows


async def test_a_file_over_10_mb_is_413_and_publishes_nothing(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    data, _ = csv_of_size(FILE_LIMIT + 1)
    response = await upload(gateway, tenant, data)
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    assert "10 MB" in response.json()["detail"]
    assert await published_count(settings) == 0


async def test_413_comes_while_reading_a_stream_not_after(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    """50 MB sent without Content-Length: the gateway stops reading soon after 10 MB."""
    sent = 0
    row = b"ld_1234567,page_view,2025-06-15T10:30:00Z\r\n" * 1500

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        head = multipart(("file", "big.csv", b"lead_id,event_type,timestamp\r\n"), close=False)
        yield head[: -len(b"\r\n")]
        while sent < 50 * 1024 * 1024:
            sent += len(row)
            yield row
        yield f"\r\n--{'leadvibe-test-boundary'}--\r\n".encode()

    response = await gateway.post(
        "/import", content=body(), headers={**tenant.headers, **MULTIPART}
    )
    assert response.status_code == 413
    assert FILE_LIMIT < sent < FILE_LIMIT + 2 * len(row)
    assert await published_count(settings) == 0


# -- Idempotency-Key ----------------------------------------------------------------------


async def test_a_repeated_keyed_import_answers_the_first_result_and_publishes_nothing(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    first = await upload(gateway, tenant, BY_LEAD_ID, key="upload-7")
    body = accepted(first)
    assert body["import_id"] == "imp_" + derived_id(tenant.unit_id, "upload-7")
    assert "Idempotent-Replayed" not in first.headers
    events = await published(settings)
    detail = (await gateway.get(f"/imports/{body['import_id']}", headers=tenant.headers)).json()
    ids = import_event_ids(
        tenant.unit_id, body["import_id"], "upload-7", datetime.fromisoformat(detail["created_at"])
    )
    assert sorted(e.event_id for _, e in events) == [ids(row) for row in (2, 3, 4)]
    assert set(times_published(events).values()) == {1}

    again = await upload(gateway, tenant, BY_LEAD_ID, key="upload-7")
    assert accepted(again) == body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await published_count(settings) == 3


async def test_a_malformed_idempotency_key_is_400(
    gateway: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await upload(gateway, tenant, BY_LEAD_ID, key="x" * 256)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_idempotency_key"


@pytest.mark.usefixtures("scorer")
async def test_a_retry_after_a_half_published_failure_is_counted_once(
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first try publishes half its events and fails (503); the retry republishes the
    same ids; the scorer applies each event once."""
    data = b"lead_id,event_type,timestamp\n" + b"".join(
        b"ld_%d,page_view,2025-06-15T10:30:00Z\n" % (i % 7) for i in range(40)
    )
    real_publish = imports.publish

    async def publish_half_then_fail(producer: Any, topic: str, records: Any) -> None:
        records = list(records)
        await real_publish(producer, topic, records[: len(records) // 2])
        raise ServiceUnavailable("Kafka went away.", retry_after=5)

    monkeypatch.setattr(imports, "publish", publish_half_then_fail)
    failed = await upload(gateway, tenant, data, key="retry-me")
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "5"
    import_id = "imp_" + derived_id(tenant.unit_id, "retry-me")
    detail = (await gateway.get(f"/imports/{import_id}", headers=tenant.headers)).json()
    assert detail["status"] == "failed"
    assert await published_count(settings) == 20

    monkeypatch.setattr(imports, "publish", real_publish)
    body = accepted(await upload(gateway, tenant, data, key="retry-me"))
    assert (body["import_id"], body["imported"]) == (import_id, 40)
    counts = times_published(await published(settings))
    assert len(counts) == 40
    assert sorted(counts.values()) == [1] * 20 + [2] * 20  # the first half, twice

    detail = await wait_for(
        lambda: gateway.get(f"/imports/{import_id}", headers=tenant.headers),
        until=lambda r: r.json()["applied"] >= 40,
        what="the scorer to apply the import",
    )
    assert detail.json()["status"] == "completed"
    assert detail.json()["applied"] == 40
    applied = await pool.fetchval("SELECT count(*) FROM events WHERE unit_id = $1", tenant.unit_id)
    assert applied == 40
    accepted(await upload(gateway, tenant, data, key="retry-me"))  # a third time: a replay
    assert await published_count(settings) == 60


async def test_a_retry_of_an_import_recorded_before_ordered_ids_publishes_its_first_ids(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, pool: asyncpg.Pool
) -> None:
    """An import that failed before migration 0008 named its events with uuid5 ids; its
    keyed retry after the upgrade names them the same, so nothing counts twice."""
    import_id = "imp_" + derived_id(tenant.unit_id, "before-0008")
    await pool.execute(
        """INSERT INTO imports (unit_id, import_id, idempotency_key, status, skip_triggers,
                                imported, errors, event_ids)
           VALUES ($1, $2, 'before-0008', 'failed', false, 3, 0, 'uuid5')""",
        tenant.unit_id,
        import_id,
    )
    accepted(await upload(gateway, tenant, BY_LEAD_ID, key="before-0008"))
    assert sorted(e.event_id for _, e in await published(settings)) == sorted(
        derived_id(tenant.unit_id, "before-0008", str(row)) for row in (2, 3, 4)
    )


async def test_a_retry_racing_the_first_try_publishes_the_first_tries_ids(
    gateway: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Event ids carry the import's stored creation time. A retry that did not see the
    first try's row when it began (both were reading their files) names its events after
    its own time, learns the stored one when it records the import, and publishes under
    the first try's ids all the same."""
    data = b"lead_id,event_type,timestamp\n" + b"ld_1,page_view,2025-06-15T10:30:00Z\n" * 5
    real_publish = imports.publish

    async def fail(producer: Any, topic: str, records: Any) -> None:
        raise ServiceUnavailable("Kafka went away.", retry_after=5)

    monkeypatch.setattr(imports, "publish", fail)
    assert (await upload(gateway, tenant, data, key="racing")).status_code == 503
    monkeypatch.setattr(imports, "publish", real_publish)

    real_find = import_store.find
    calls = 0

    async def not_yet(*args: Any) -> import_store.ImportRecord | None:
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real_find(*args)

    monkeypatch.setattr(import_store, "find", not_yet)
    body = accepted(await upload(gateway, tenant, data, key="racing"))
    detail = (await gateway.get(f"/imports/{body['import_id']}", headers=tenant.headers)).json()
    created = datetime.fromisoformat(detail["created_at"])
    ids = import_event_ids(tenant.unit_id, body["import_id"], "racing", created)
    assert sorted(e.event_id for _, e in await published(settings)) == [ids(r) for r in range(2, 7)]


# -- Organizational Units -----------------------------------------------------------------


async def test_a_token_imports_into_its_active_unit_only(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings, pool: asyncpg.Pool
) -> None:
    sales = await make_tenant(pool, "acme", "sales")  # same organisation, another unit
    other_org = await make_tenant(pool, "globex", "ops")

    in_marketing = accepted(await upload(gateway, tenant, BY_LEAD_ID, key="k"))
    assert {(e.unit_id, k.split(b":")[0]) for k, e in await published(settings)} == {
        (tenant.unit_id, tenant.unit_id.encode())
    }
    path = f"/imports/{in_marketing['import_id']}"
    assert (await gateway.get(path, headers=sales.headers)).status_code == 404
    assert (await gateway.get(path, headers=other_org.headers)).status_code == 404
    assert (await gateway.get(path, headers=tenant.headers)).status_code == 200

    # Switching the token's active unit: its next import lands in sales.
    switched = await gateway.post(
        "/org-units/active", json={"unit_id": sales.unit_id}, headers=tenant.headers
    )
    assert switched.status_code == 200
    in_sales = accepted(await upload(gateway, tenant, BY_EMAIL, key="k"))
    assert in_sales["import_id"] != in_marketing["import_id"]  # same key, another unit
    units = {e.import_id: e.unit_id for _, e in await published(settings)}
    assert units == {
        in_marketing["import_id"]: tenant.unit_id,
        in_sales["import_id"]: sales.unit_id,
    }
    assert (await gateway.get(path, headers=tenant.headers)).status_code == 404
    own = await gateway.get(f"/imports/{in_sales['import_id']}", headers=sales.headers)
    assert own.status_code == 200

    # A unit of another organisation: 403, and the token stays where it was.
    refused = await gateway.post(
        "/org-units/active", json={"unit_id": other_org.unit_id}, headers=tenant.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    accepted(await upload(gateway, tenant, BY_LEAD_ID))
    assert {e.unit_id for _, e in await published(settings)} == {tenant.unit_id, sales.unit_id}
    in_other_org = await pool.fetchval(
        "SELECT count(*) FROM imports WHERE unit_id = $1", other_org.unit_id
    )
    assert in_other_org == 0


async def test_413_at_once_when_content_length_says_the_body_is_too_large(
    gateway: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    response = await upload(gateway, tenant, b"x" * (FILE_LIMIT + 100_000))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("The upload is 1058")  # bytes, as sent
    assert await published_count(settings) == 0


async def test_a_connection_dropped_mid_upload_publishes_and_records_nothing(
    settings: Settings, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    body = multipart(("file", "events.csv", BY_LEAD_ID * 100))
    app = create_app(settings)
    sent: list[dict[str, Any]] = []
    async with app.router.lifespan_context(app) as state:
        chunks = [body[:300], body[300:600]]

        async def receive() -> dict[str, Any]:
            if chunks:
                return {"type": "http.request", "body": chunks.pop(0), "more_body": True}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/import",
            "query_string": b"",
            "headers": [
                (b"authorization", f"Bearer {tenant.token}".encode()),
                (b"content-type", MULTIPART["Content-Type"].encode()),
            ],
            "state": dict(state or {}),
        }
        await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400
    assert await published_count(settings) == 0
    assert await imports_recorded(pool) == 0
