"""The ``leadvibe`` command, run as a user runs it, against the real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import asyncpg
import pytest

from leadvibe.settings import Settings
from leadvibe.tenancy import authenticate, ensure_unit, hash_token

pytestmark = pytest.mark.integration


def _leadvibe(settings: Settings, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """``leadvibe ARGS`` as a process, in the test's database and topics (``environ`` over)."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
        **environ,
    }
    return subprocess.run(
        [sys.executable, "-m", "leadvibe.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_token_create_prints_only_a_token_stored_as_a_hash(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    result = _leadvibe(settings, "token", "create", "--org", "acme", "--unit", "sales")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert token.startswith("lv_")

    principal = await authenticate(pool, token)
    assert principal is not None
    assert await pool.fetchval(
        "SELECT name FROM org_units WHERE unit_id = $1", principal.unit_id
    ) == ("sales")
    stored = await pool.fetch("SELECT token_hash FROM api_tokens")
    assert [r["token_hash"] for r in stored] == [hash_token(token)]

    again = _leadvibe(settings, "token", "create", "--org", "acme", "--unit", "sales")
    second = await authenticate(pool, again.stdout.strip())
    assert second is not None
    assert (second.org_id, second.unit_id) == (principal.org_id, principal.unit_id)
    assert again.stdout != result.stdout


def test_a_missing_setting_fails_with_its_name(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "leadvibe.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


async def test_migrate_is_idempotent(settings: Settings, pool: asyncpg.Pool) -> None:
    before = await pool.fetchval("SELECT count(*) FROM schema_migrations")
    result = _leadvibe(settings, "migrate")
    assert result.returncode == 0, result.stderr
    assert "none (up to date)" in result.stderr
    assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == before


async def test_aliases_collisions_prints_each_group_with_its_leads(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, one = await ensure_unit(conn, "acme", "one")
        _, two = await ensure_unit(conn, "acme", "two")
    await pool.executemany(
        """INSERT INTO aliases (unit_id, kind, value, lead_id, event_id)
           VALUES ($1, $2, $3, $4, 'e')""",
        [
            (one, "email", "jane@acme.com", "ld_1"),
            (one, "email", "JA\u200bNE@acme.com".lower(), "ld_2"),
            (two, "email", "e\u0301@x.fr", "ld_3"),
        ],
    )
    result = _leadvibe(settings, "aliases", "collisions", "--unit", one)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{one} email 'jane@acme.com': split; 2 stored value(s) of 2 lead(s)",
        "  'jane@acme.com'  ld_1",
        "  'ja\\u200bne@acme.com'  ld_2",
    ]
    assert "1 group(s) to look at" in result.stderr
    by_name = _leadvibe(settings, "aliases", "collisions", "--unit", "one")
    assert by_name.stdout == result.stdout
    every = _leadvibe(settings, "aliases", "collisions")
    assert every.returncode == 0, every.stderr
    assert f"{two} email '\u00e9@x.fr': stale" in every.stdout

    as_json = _leadvibe(settings, "aliases", "collisions", "--unit", "two", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [
        {
            "unit_id": two,
            "kind": "email",
            "value": "\u00e9@x.fr",
            "split": False,
            "stale": True,
            "lead_ids": ["ld_3"],
            "stored": [{"value": "e\u0301@x.fr", "lead_id": "ld_3"}],
        }
    ]


async def test_token_create_names_its_unit_on_stderr_or_in_json(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    plain = _leadvibe(settings, "token", "create", "--org", "acme", "--unit", "main")
    assert plain.returncode == 0, plain.stderr
    principal = await authenticate(pool, plain.stdout.strip())
    assert principal is not None
    assert plain.stderr.strip() == (
        f"token create: active on unit {principal.unit_id} ('main' of 'acme')"
    )

    result = _leadvibe(settings, "token", "create", "--org", "acme", "--unit", "main", "--json")
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert made["token"].startswith("lv_")
    again = await authenticate(pool, made["token"])
    assert again is not None
    assert made == {
        "token": made["token"],
        "org_id": principal.org_id,
        "org": "acme",
        "unit_id": principal.unit_id,
        "unit": "main",
    }


async def test_units_are_created_and_listed_by_name(settings: Settings) -> None:
    made = _leadvibe(settings, "unit", "create", "--org", "acme", "--unit", "sales")
    assert made.returncode == 0, made.stderr
    sales = made.stdout.strip()
    assert sales.startswith("ou_")
    other = _leadvibe(settings, "unit", "create", "--org", "globex", "--unit", "sales", "--json")
    assert other.returncode == 0, other.stderr
    globex_sales = json.loads(other.stdout)
    assert (globex_sales["org"], globex_sales["name"]) == ("globex", "sales")

    again = _leadvibe(settings, "unit", "create", "--org", "acme", "--unit", "sales")
    assert again.returncode == 1
    assert f"'acme' has a unit 'sales' already: {sales}" in again.stderr

    listed = _leadvibe(settings, "unit", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(u["org"], u["name"], u["unit_id"]) for u in json.loads(listed.stdout)] == [
        ("acme", "sales", sales),
        ("globex", "sales", globex_sales["unit_id"]),
    ]
    table = _leadvibe(settings, "unit", "list", "--org", "acme")
    assert table.stdout.splitlines()[0].split() == ["ORGANISATION", "UNIT", "ID", "CREATED"]
    assert table.stdout.splitlines()[1].split()[:3] == ["acme", "sales", sales]
    assert len(table.stdout.splitlines()) == 2


async def test_a_name_two_organisations_use_needs_the_org_or_the_id(settings: Settings) -> None:
    for org in ("acme", "globex"):
        assert _leadvibe(settings, "unit", "create", "--org", org, "--unit", "main").returncode == 0
    ambiguous = _leadvibe(settings, "aliases", "collisions", "--unit", "main")
    assert ambiguous.returncode == 1
    assert "2 organisations have a unit named 'main'" in ambiguous.stderr
    assert "--org" in ambiguous.stderr
    chosen = _leadvibe(settings, "aliases", "collisions", "--unit", "main", "--org", "globex")
    assert chosen.returncode == 0, chosen.stderr
    unknown = _leadvibe(settings, "aliases", "collisions", "--unit", "nope")
    assert unknown.returncode == 1
    assert "no unit 'nope'; 'leadvibe unit list' shows every unit" in unknown.stderr
    org_alone = _leadvibe(settings, "aliases", "collisions", "--org", "acme")
    assert org_alone.returncode == 1
    assert "give --unit too" in org_alone.stderr


def test_topics_create_names_the_setting_when_the_cluster_is_too_small(
    settings: Settings,
) -> None:
    result = _leadvibe(
        settings,
        "topics",
        "create",
        LEADVIBE_TOPIC_NAMESPACE=f"test.replication_{uuid.uuid4().hex[:8]}",
        LEADVIBE_REPLICATION_FACTOR="3",
        LEADVIBE_MIN_INSYNC_REPLICAS="2",
    )
    assert result.returncode == 1
    assert "LEADVIBE_REPLICATION_FACTOR is 3 but the Kafka cluster has 1 broker" in result.stderr
