"""Log lines: plain text by default, JSON objects with LEADVIBE_LOG_FORMAT=json."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from leadvibe.logs import configure_logging, log_context
from leadvibe.settings import Settings, SettingsError
from tests.gateway import gateway_process
from tests.waiting import wait_for

ENV = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "DATABASE_URL": "postgresql://db/x"}


def test_text_is_the_default_and_json_the_other_format() -> None:
    assert Settings.from_env(ENV).log_format == "text"
    assert Settings.from_env({**ENV, "LEADVIBE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError, match="LEADVIBE_LOG_FORMAT must be text or json"):
        Settings.from_env({**ENV, "LEADVIBE_LOG_FORMAT": "xml"})


def _captured(log_format: str) -> tuple[logging.Handler, io.StringIO]:
    handler = configure_logging("scorer", "json" if log_format == "json" else "text")
    out = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    return handler, out


def test_a_json_line_has_the_service_and_the_fields_of_its_context() -> None:
    handler, out = _captured("json")
    try:
        log = logging.getLogger("tests.logs")
        with log_context(unit="ou_1", import_id="imp_1"):
            log.warning("applied %d", 3, extra={"partition": 2, "offset": 41})
        log.warning("outside")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "service")} == {
        "level": "WARNING",
        "logger": "tests.logs",
        "message": "applied 3",
        "service": "scorer",
    }
    assert (first["unit"], first["import_id"], first["partition"], first["offset"]) == (
        "ou_1",
        "imp_1",
        2,
        41,
    )
    assert first["time"].endswith("+00:00")
    assert "unit" not in second
    assert second["message"] == "outside"


def test_text_lines_stay_as_they_were() -> None:
    handler, out = _captured("text")
    try:
        with log_context(unit="ou_1"):
            logging.getLogger("tests.logs").warning("hello")
    finally:
        logging.getLogger().removeHandler(handler)
    assert out.getvalue().rstrip().endswith(" WARNING tests.logs: hello")


@pytest.mark.integration
async def test_the_gateway_logs_json_lines_its_access_lines_too(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    async with gateway_process(
        settings,
        log,
        LEADVIBE_LOG_FORMAT="json",
        LEADVIBE_LOG_LEVEL="info",
        LEADVIBE_ACCESS_LOG="true",  # off by default
    ) as (_, client):
        assert (await client.get("/org-units")).status_code == 401

        async def access_lines() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in log.read_text().splitlines() if line]
            return [line for line in lines if "GET /org-units" in str(line["message"])]

        access = await wait_for(access_lines, what="the access line of GET /org-units")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line]
    assert lines, "the gateway logged nothing"
    assert {line["service"] for line in lines} == {"gateway"}
    assert [line["logger"] for line in access] == ["uvicorn.access"]
