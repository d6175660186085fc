"""Run the gateway: ``python -m ingest_gateway`` (HOST and PORT from the environment)."""

from __future__ import annotations

import os

import uvicorn

from ingest_gateway.app import create_app
from leadvibe.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("LEADVIBE_HOST", "127.0.0.1"),
        port=int(os.environ.get("LEADVIBE_PORT", "8000")),
        loop="uvloop",
        http="httptools",
        log_level=os.environ.get("LEADVIBE_LOG_LEVEL", "info"),
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
