"""Run the gateway: ``python -m ingest_gateway`` (HOST and PORT from the environment).

With ``LEADVIBE_GATEWAY_PROCESSES`` above 1, as that many processes on the same port
(:mod:`ingest_gateway.processes`).
"""

from __future__ import annotations

import os
import socket
import sys

import uvicorn

from ingest_gateway.app import create_app
from ingest_gateway.processes import supervise, worker_number
from leadvibe.service import configure_logging
from leadvibe.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"ingest_gateway: {exc}", file=sys.stderr)
        return 2
    number = worker_number()
    if settings.gateway_processes > 1 and number is None:
        return supervise(settings)
    # uvicorn's own loggers (access lines included) go through the handler set here, so
    # that LEADVIBE_LOG_FORMAT=json makes every line of the gateway's log JSON.
    configure_logging("gateway", settings)
    host = os.environ.get("LEADVIBE_HOST", "127.0.0.1")
    port = int(os.environ.get("LEADVIBE_PORT", "8000"))
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        log_level=os.environ.get("LEADVIBE_LOG_LEVEL", "info"),
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    if number is None:
        server.run()
        return 0
    # One of several copies: each binds the port with SO_REUSEPORT, and the kernel spreads
    # the connections over them.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
