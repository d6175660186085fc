"""The OpenAPI document: every route described, served with its page, and the live gateway
held to it by schemathesis."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from ingest_gateway.app import create_app
from ingest_gateway.openapi.document import build_document, described_routes
from ingest_gateway.openapi.operations import OPERATIONS
from leadvibe.settings import Settings
from leadvibe.tenancy import create_token
from tests.gateway import gateway_process
from tests.waiting import wait_for

SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_every_route_is_described_and_every_description_is_a_route() -> None:
    app = create_app(Settings(kafka_bootstrap_servers="unused", database_url="unused"))
    document = build_document(app.routes)
    routes = described_routes(app.routes)
    operations = sum(len(methods) for methods in document["paths"].values())
    assert operations == sum(len((r.methods or set()) - {"HEAD"}) for r in routes)
    assert {r.endpoint for r in routes} == set(OPERATIONS)
    assert document["openapi"] == "3.1.0"
    ingest = document["paths"]["/ingest"]["post"]
    assert set(ingest["responses"]) == {"202", "400", "401", "408", "413", "415", "503"}
    errors = ingest["responses"]["413"]["content"]["application/json"]["schema"]["allOf"][1]
    assert errors["properties"]["error"]["enum"] == [
        "metadata_too_large",
        "payload_too_large",
        "too_many_events",
        "too_many_values",
    ]
    assert document["paths"]["/health"]["get"]["security"] == []


@pytest.mark.integration
async def test_the_document_and_its_page_are_served_without_a_cdn(
    gateway: httpx.AsyncClient,
) -> None:
    document = await gateway.get("/openapi.json")
    assert document.status_code == 200
    assert document.json()["paths"]["/org-units"]["post"]["operationId"] == "create_org_unit"
    page = await gateway.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http" not in page.text, "the page loads nothing from another host"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
        served = await gateway.get(f"/docs/assets/{asset}")
        assert served.status_code == 200, asset
        assert len(served.content) > 100
    assert "/openapi.json" in (await gateway.get("/docs/assets/docs.js")).text


@pytest.mark.integration
async def test_unknown_paths_and_methods_answer_in_the_error_shape(
    gateway: httpx.AsyncClient,
) -> None:
    missing = await gateway.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await gateway.patch("/rulesets")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert wrong.headers["allow"] == "GET, HEAD, POST"


async def _seed(client: httpx.AsyncClient, token: str, pool: asyncpg.Pool) -> dict[str, str]:
    """One of each resource, so that the operations on one are tested past their 404."""
    headers = {"Authorization": f"Bearer {token}"}
    ruleset = await client.post(
        "/rulesets",
        json={"name": "base", "rules": [{"event_type": "visit", "points": 5}]},
        headers=headers,
    )
    trigger = await client.post(
        "/triggers",
        json={
            "name": "hot",
            "score_threshold": 5,
            "fire_mode": "once",
            "webhook_url": "http://127.0.0.1:9/hook",
        },
        headers=headers,
    )
    imported = await client.post(
        "/import",
        files={"file": ("e.csv", b"lead_id,event_type\nld_seed,visit\n")},
        headers=headers,
    )
    assert (ruleset.status_code, trigger.status_code, imported.status_code) == (201, 201, 202)
    await wait_for(
        lambda: pool.fetchval("SELECT count(*) FROM leads WHERE lead_id = 'ld_seed'"),
        until=lambda n: n == 1,
        what="the scorer to apply the seed import",
    )
    return {
        "lead_id": "ld_seed",
        "ruleset_id": ruleset.json()["id"],
        "trigger_id": trigger.json()["id"],
        "import_id": imported.json()["import_id"],
    }


def _config(ids: dict[str, str], path: Path) -> Path:
    """The committed configuration, and half of each path parameter from ``ids``."""
    lines = [SCHEMATHESIS_CONFIG.read_text()]
    for name, value in ids.items():
        lines.append(f'[dictionaries.{name}]\nvalues = ["{value}"]\n')
    lines.append("[parameters]")
    for name in ids:
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.integration
@pytest.mark.usefixtures("scorer")
async def test_schemathesis_finds_the_live_gateway_true_to_its_document(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Every operation, with generated valid and invalid input (and, for half the cases,
    the ids of real resources): no 5xx, and every answer's status, headers, content type
    and body as the document says. Bounded: 5 generated examples an operation beside the
    coverage phase's boundary values; about 30 s on an idle machine, never over 90 s."""
    async with pool.acquire() as conn:
        token = await create_token(conn, "acme", "contract")
    async with gateway_process(
        settings,
        tmp_path / "gateway.log",
        LEADVIBE_WEBHOOK_SECRET="contract-test-secret",
        LEADVIBE_ALLOW_PRIVATE_WEBHOOKS="true",
    ) as (_, client):
        config = _config(await _seed(client, token, pool), tmp_path / "schemathesis.toml")
        paths = (await client.get("/openapi.json")).json()["paths"]
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(config),
            "run",
            str(client.base_url.join("/openapi.json")),
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "5",
            "--max-time",
            "90",
            "--seed",
            "1",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,  # its cache (.schemathesis/) goes there, not into the repository
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    report = output.decode()
    # Every operation but GET /openapi.json, which schemathesis leaves out as the document.
    tested = sum(len(methods) for methods in paths.values()) - 1
    assert f"{tested} selected / {tested} total" in report, report
    assert f"Tested: {tested}\n" in report, report  # the time bound cut none short
    assert process.returncode == 0, report + (tmp_path / "gateway.log").read_text()[-3000:]
