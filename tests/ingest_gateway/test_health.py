"""GET /health (readiness, naming each dependency) and GET /health/live (liveness); which
database failures answer 503 ``database_unavailable`` (the process tests of a Postgres
really going away are in test_outages.py)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from ingest_gateway.database import DatabaseUnreachable, is_outage


@pytest.mark.integration
async def test_health_says_ok_and_names_each_dependency(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body) == {"status", "checks"}
    assert set(body["checks"]) == {"postgres", "kafka"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert isinstance(check["detail"], str)
        assert check["detail"]
    assert (await gateway.get("/health/live")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    "failure",
    [
        DatabaseUnreachable("ConnectionRefusedError: [Errno 111]"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    ],
)
def test_the_database_being_away_is_an_outage(failure: Exception) -> None:
    assert is_outage(failure)


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),
        asyncpg.exceptions.DataError("invalid input"),
        OSError(28, "No space left on device"),  # the spool's disk, not the database
        ValueError("a bug"),
    ],
)
def test_other_failures_are_not_outages(failure: Exception) -> None:
    assert not is_outage(failure)
