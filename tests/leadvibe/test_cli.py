"""The ``leadvibe`` command, run as a user runs it, against the real database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import asyncpg
import pytest

from leadvibe.settings import Settings
from leadvibe.tenancy import authenticate, hash_token

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
    await pool.executemany(
        """INSERT INTO aliases (unit_id, kind, value, lead_id, event_id)
           VALUES ($1, $2, $3, $4, 'e')""",
        [
            ("ou_1", "email", "jane@acme.com", "ld_1"),
            ("ou_1", "email", "JA\u200bNE@acme.com".lower(), "ld_2"),
            ("ou_2", "email", "e\u0301@x.fr", "ld_3"),
        ],
    )
    result = _leadvibe(settings, "aliases", "collisions", "--unit", "ou_1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ou_1 email 'jane@acme.com': split; 2 stored value(s) of 2 lead(s)",
        "  'jane@acme.com'  ld_1",
        "  'ja\\u200bne@acme.com'  ld_2",
    ]
    assert "1 group(s) to look at" in result.stderr
    every = _leadvibe(settings, "aliases", "collisions")
    assert every.returncode == 0, every.stderr
    assert "ou_2 email '\u00e9@x.fr': stale" in every.stdout


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
