"""The ``leadvibe`` command, run as a user runs it, against the real database."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from leadvibe.settings import Settings
from leadvibe.tenancy import authenticate, hash_token

pytestmark = pytest.mark.integration


def _leadvibe(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
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
