"""Run the gateway: ``python -m ingest_gateway`` (HOST and PORT from the environment)."""

from __future__ import annotations

import os
import sys

import uvicorn

from ingest_gateway.app import create_app
from leadvibe.service import configure_logging
from leadvibe.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"ingest_gateway: {exc}", file=sys.stderr)
        return 2
    # uvicorn's own loggers (access lines included) go through the handler set here, so
    # that LEADVIBE_LOG_FORMAT=json makes every line of the gateway's log JSON.
    configure_logging("gateway", settings)
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("LEADVIBE_HOST", "127.0.0.1"),
        port=int(os.environ.get("LEADVIBE_PORT", "8000")),
        loop="uvloop",
        http="httptools",
        log_config=None,
        log_level=os.environ.get("LEADVIBE_LOG_LEVEL", "info"),
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
