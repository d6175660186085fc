"""``GET /health`` of a consumer process: 200 when every check passes, 503 naming what failed."""

from __future__ import annotations

import socket
from collections.abc import Mapping

import httpx
import pytest

from leadvibe.health import Check, health_body, serving_health
from leadvibe.settings import SettingsError
from tests.proxy import free_port


def test_all_checks_ok_is_200() -> None:
    status, body = health_body({"postgres": Check(True, "answers")})
    assert status == 200
    assert body == b'{"status":"ok","checks":{"postgres":{"ok":true,"detail":"answers"}}}'


def test_one_failed_check_is_503_unavailable() -> None:
    status, body = health_body(
        {"postgres": Check(True, "answers"), "partitions": Check(False, "stopped: t[2]")}
    )
    assert status == 503
    assert b'"status":"unavailable"' in body
    assert b'"partitions":{"ok":false,"detail":"stopped: t[2]"}' in body


async def test_the_server_answers_health_and_refuses_anything_else() -> None:
    state = {"ok": True}

    async def checks() -> Mapping[str, Check]:
        return {"kafka": Check(state["ok"], "answers" if state["ok"] else "no answer")}

    port = free_port()
    async with (
        serving_health(port, checks),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        ok = await client.get("/health")
        assert ok.status_code == 200
        assert ok.json() == {"status": "ok", "checks": {"kafka": {"ok": True, "detail": "answers"}}}
        state["ok"] = False
        down = await client.get("/health")
        assert down.status_code == 503
        assert down.json()["checks"]["kafka"] == {"ok": False, "detail": "no answer"}
        missing = await client.get("/metrics")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        assert (await client.post("/health")).status_code == 405
    with socket.socket() as s:  # closed with the block
        assert s.connect_ex(("127.0.0.1", port)) != 0


async def test_no_port_serves_nothing() -> None:
    async def checks() -> Mapping[str, Check]:
        raise AssertionError("never asked")

    async with serving_health(None, checks):
        pass


async def test_a_port_in_use_is_a_setting_error_naming_it() -> None:
    async def checks() -> Mapping[str, Check]:
        return {}

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"LEADVIBE_HEALTH_PORT is {port}"):
            async with serving_health(port, checks):
                pass
