"""An import a gateway crash cut off mid-publish never stays ``publishing``: the next start
of that gateway marks it failed with a reason, and a retry with its Idempotency-Key
completes it exactly (same event ids, nothing counted twice)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from ingest_gateway import import_store, recovery
from ingest_gateway.idempotency import import_id_of
from ingest_gateway.import_store import Publisher
from leadvibe.settings import Settings
from tests.conftest import Tenant
from tests.gateway import gateway_process
from tests.ingest_gateway.helpers import published_count
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROWS = 40_000
LEADS = 400


def _csv() -> bytes:
    rows = (f"ld_{n % LEADS},page_view,2025-06-{1 + n % 28:02d}T10:30:00Z\n" for n in range(ROWS))
    return ("lead_id,event_type,timestamp\n" + "".join(rows)).encode()


async def _one_point_per_page_view(pool: asyncpg.Pool, unit_id: str) -> None:
    await pool.execute(
        "INSERT INTO rulesets (ruleset_id, unit_id, name) VALUES ('rs_pv', $1, 'pv')", unit_id
    )
    await pool.execute(
        "INSERT INTO rules (ruleset_id, event_type, points, position) "
        "VALUES ('rs_pv', 'page_view', 1, 0)"
    )


async def test_an_import_cut_off_by_a_kill_9_is_failed_at_the_next_start_and_a_retry_completes_it(
    settings: Settings,
    pool: asyncpg.Pool,
    tenant: Tenant,
    scorer: asyncio.Task[None],
    tmp_path: Path,
) -> None:
    await _one_point_per_page_view(pool, tenant.unit_id)
    data = _csv()
    headers = {**tenant.headers, "Idempotency-Key": "cut-off"}
    import_id = import_id_of(tenant.unit_id, "cut-off")
    instance = f"test-gateway-{uuid.uuid4().hex[:8]}"

    async with gateway_process(
        settings, tmp_path / "first.log", LEADVIBE_GATEWAY_INSTANCE=instance
    ) as (process, client):
        upload = asyncio.create_task(
            client.post("/import", headers=headers, files={"file": ("events.csv", data)})
        )

        async def status() -> str | None:
            found: str | None = await pool.fetchval("SELECT status FROM imports")
            return found

        at_kill = await wait_for(status, timeout=60, interval=0.005, what="publishing to begin")
        await wait_for(
            lambda: published_count(settings), interval=0.01, what="the first events published"
        )
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        with pytest.raises(httpx.TransportError):
            await upload
    assert at_kill == "publishing"
    published_at_kill = await published_count(settings)
    print(f"{published_at_kill} of {ROWS} events were on the topic when the gateway was killed")
    assert published_at_kill > 0
    assert await pool.fetchval("SELECT status FROM imports") == "publishing"

    async with gateway_process(
        settings, tmp_path / "second.log", LEADVIBE_GATEWAY_INSTANCE=instance
    ) as (process, client):

        async def detail() -> dict[str, object]:
            response = await client.get(f"/imports/{import_id}", headers=tenant.headers)
            body: dict[str, object] = response.json()
            return body

        failed = await wait_for(
            detail, until=lambda d: d["status"] != "publishing", what="the import marked"
        )
        assert failed["status"] == "failed"
        assert "stopped" in str(failed["failure"])
        assert "same Idempotency-Key" in str(failed["failure"])

        retried = await client.post(
            "/import", headers=headers, files={"file": ("events.csv", data)}
        )
        assert retried.status_code == 202, retried.text
        assert (retried.json()["import_id"], retried.json()["imported"]) == (import_id, ROWS)
        done = await wait_for(
            detail,
            until=lambda d: d["applied"] == ROWS,
            timeout=180,
            interval=0.5,
            what="every event applied",
        )
        assert (done["status"], done["imported"], done["failure"]) == ("completed", ROWS, None)
        assert process.returncode is None

    assert await pool.fetchval("SELECT count(*) FROM events") == ROWS
    assert await pool.fetchval("SELECT sum(score) FROM leads") == ROWS
    counts = await pool.fetch("SELECT DISTINCT event_count, score FROM leads")
    assert [tuple(r) for r in counts] == [(ROWS // LEADS, ROWS // LEADS)]
    assert await pool.fetchval("SELECT applied FROM import_progress") == ROWS


async def test_only_imports_whose_publisher_is_gone_are_marked(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Of four imports publishing: a previous boot's of this instance and one begun longer
    ago than any publishing takes are marked; this boot's and a live other gateway's not."""
    me = Publisher("gw-a:8000", "boot_2")
    begun = [
        ("imp_prev", Publisher("gw-a:8000", "boot_1"), "key-prev"),
        ("imp_mine", me, "key-mine"),
        ("imp_other", Publisher("gw-b:8000", "boot_9"), "key-other"),
        ("imp_old", Publisher("gw-c:8000", "boot_5"), None),
    ]
    for import_id, publisher, key in begun:
        assert await import_store.begin(
            pool,
            unit_id=tenant.unit_id,
            import_id=import_id,
            idempotency_key=key,
            created_at=datetime.now(UTC),
            skip_triggers=False,
            imported=1,
            errors=0,
            error_rows=[],
            ignored_columns=[],
            publisher=publisher,
        )
    await pool.execute(
        "UPDATE imports SET publishing_since = now() - make_interval(secs => $1) "
        "WHERE import_id = 'imp_old'",
        recovery.STALE_AFTER + 1,
    )
    assert await recovery.sweep_once(pool, me) == 2
    rows = await pool.fetch("SELECT import_id, status, failure FROM imports ORDER BY import_id")
    status = {r["import_id"]: r["status"] for r in rows}
    assert status == {
        "imp_mine": "publishing",
        "imp_old": "failed",
        "imp_other": "publishing",
        "imp_prev": "failed",
    }
    failure = {r["import_id"]: r["failure"] for r in rows}
    assert "same Idempotency-Key" in failure["imp_prev"]
    assert "no Idempotency-Key" in failure["imp_old"]

    # The attempt marked failed while still publishing completes all the same; one whose
    # row a retry took over does not.
    await import_store.complete(pool, tenant.unit_id, "imp_prev", Publisher("gw-a:8000", "boot_1"))
    await import_store.complete(pool, tenant.unit_id, "imp_other", me)
    status = dict(await pool.fetch("SELECT import_id, status FROM imports"))
    assert (status["imp_prev"], status["imp_other"]) == ("completed", "publishing")
