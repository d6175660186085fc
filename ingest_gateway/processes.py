"""Several gateway processes on one port (``LEADVIBE_GATEWAY_PROCESSES``), for more than one
core's worth of requests.

``python -m ingest_gateway`` with ``LEADVIBE_GATEWAY_PROCESSES=N`` (N > 1) becomes a small
supervisor: it starts N copies of itself, numbered 1 to N, each binding the same address
with ``SO_REUSEPORT`` so that the kernel spreads connections over them, and starts a copy
that exits again (after 1 s, doubling to 30 s while it keeps exiting at once), with a line
on stderr. SIGTERM or SIGINT is passed on to every copy, which drains and exits;
the supervisor exits once they all have (killing those still running after
:data:`STOP_GRACE` seconds).

Copy ``k`` is the gateway instance ``<LEADVIBE_GATEWAY_INSTANCE>/k`` (host:port/k by
default): the name under which it publishes imports (``ingest_gateway.recovery``). Only
that copy holds the name at a time, so when copy ``k`` starts again it marks failed the
imports its dead predecessor left ``publishing``, and never those of copy ``j`` still
running. The import slots are counted across the copies in Postgres
(``ingest_gateway.upload_slots``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Final

from leadvibe.settings import Settings

WORKER_ENV: Final = "LEADVIBE_GATEWAY_WORKER"
"""Set by the supervisor in each copy's environment: its number, 1 to N."""
STOP_GRACE: Final = 25.0
"""Seconds the copies have to drain after SIGTERM before they are killed."""
BACKOFF: Final = 1.0
BACKOFF_MAX: Final = 30.0
STEADY: Final = 60.0
"""Seconds after which a copy that exits is started again at once (after BACKOFF)."""


def worker_number() -> int | None:
    """This process's number among the supervisor's copies; None when it runs alone."""
    raw = os.environ.get(WORKER_ENV, "").strip()
    return int(raw) if raw else None


def instance_of(base: str, number: int) -> str:
    """The gateway instance name of copy ``number``."""
    return f"{base}/{number}"


class _Copy:
    def __init__(self, number: int, base_instance: str) -> None:
        self.number = number
        self.base_instance = base_instance
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.delay = BACKOFF
        self.restart_at: float | None = None
        self.restarts = 0

    def start(self) -> None:
        env = {
            **os.environ,
            WORKER_ENV: str(self.number),
            "LEADVIBE_GATEWAY_INSTANCE": instance_of(self.base_instance, self.number),
        }
        self.process = subprocess.Popen([sys.executable, "-m", "ingest_gateway"], env=env)
        self.started = time.monotonic()
        self.restart_at = None


def supervise(settings: Settings) -> int:
    """Run ``settings.gateway_processes`` copies until SIGTERM or SIGINT; 0 once all exited."""
    copies = [
        _Copy(number, settings.gateway_instance)
        for number in range(1, settings.gateway_processes + 1)
    ]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for copy in copies:
            if copy.process is not None and copy.process.poll() is None:
                copy.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for copy in copies:
        copy.start()
    while not stopping:
        now = time.monotonic()
        for copy in copies:
            assert copy.process is not None
            if copy.restart_at is not None:
                if now >= copy.restart_at and not stopping:
                    copy.start()
                continue
            status = copy.process.poll()
            if status is None:
                continue
            if now - copy.started >= STEADY:
                copy.delay = BACKOFF
            copy.restarts += 1
            print(
                f"gateway: process {copy.number} exited with status {status}; restarting in "
                f"{copy.delay:g} s (restart {copy.restarts})",
                file=sys.stderr,
                flush=True,
            )
            copy.restart_at = now + copy.delay
            copy.delay = min(copy.delay * 2, BACKOFF_MAX)
        time.sleep(0.2)
    deadline = time.monotonic() + STOP_GRACE
    for copy in copies:
        if copy.process is None:
            continue
        try:
            copy.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            copy.process.kill()
            copy.process.wait()
    return 0
