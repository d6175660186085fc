"""The services as processes (``python -m MODULE``), as in production, watched for exits.

Each has its log in the suite's folder. A service the scenario kills on purpose is
restarted by the scenario; any other exit is a fault of the system under test: it is
recorded (with the log's last lines) and the service restarted, so that the scenario
goes on and one run shows every problem.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.processes import ROOT, tail
from tests.faults.servers import free_port


class Problems(list[str]):
    """What went wrong, in order; each printed as it is noted (``pytest -s`` shows them
    as they happen, next to the scenario's progress)."""

    def note(self, problem: str) -> None:
        if problem in self:  # once is enough (a retried request failing alike)
            return
        print(f"PROBLEM: {problem}", flush=True)
        self.append(problem)


@dataclass
class Service:
    name: str
    module: str
    env: dict[str, str]
    log: Path
    health_port: int | None = None
    """Where the service answers GET /health (LEADVIBE_HEALTH_PORT, or the gateway's port)."""
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"==== start {self.starts + 1}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                env=self.env,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def exit_code(self) -> int | None:
        """None while it runs."""
        return None if self.process is None else self.process.returncode

    async def kill(self) -> None:
        """SIGKILL: no draining, no clean-up."""
        assert self.process is not None
        with suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM (it drains and exits), SIGKILL if it has not within 15 s."""
        if self.process is None or self.process.returncode is not None:
            return
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=15)
        except TimeoutError:
            await self.kill()

    async def health(self, client: httpx.AsyncClient) -> tuple[int, Any]:
        """(status, JSON body) of GET /health; (0, None) if nothing answers."""
        if self.health_port is None:
            return 0, None
        try:
            response = await client.get(f"http://127.0.0.1:{self.health_port}/health", timeout=2)
        except httpx.HTTPError:
            return 0, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text


@dataclass
class Fleet:
    """The gateway, two scorers and the trigger service, and every unexpected exit seen."""

    services: dict[str, Service]
    problems: Problems = field(default_factory=Problems)

    @classmethod
    def of(cls, env: Mapping[str, str], scorer_env: Mapping[str, str], logs: Path) -> Fleet:
        gateway_port = free_port()
        services = [
            Service(
                "gateway",
                "ingest_gateway",
                {**env, "LEADVIBE_HOST": "127.0.0.1", "LEADVIBE_PORT": str(gateway_port)},
                logs / "gateway.log",
                health_port=gateway_port,
            ),
            *(
                Service(name, "scorer", dict(scorer_env), logs / f"{name}.log")
                for name in ("scorer-1", "scorer-2")
            ),
            Service("triggers", "trigger_service", dict(env), logs / "triggers.log"),
        ]
        for service in services[1:]:
            service.health_port = free_port()
            service.env["LEADVIBE_HEALTH_PORT"] = str(service.health_port)
        return cls({s.name: s for s in services})

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.services['gateway'].health_port}"

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    async def start(self) -> None:
        for service in self.services.values():
            await service.start()

    async def watch(self, during: str) -> None:
        """Record every service that exited (it should not have) and start it again."""
        for service in self.services.values():
            code = service.exit_code
            if code is not None:
                self.problems.note(
                    f"{during}: {service.name} exited with code {code}; its log ends:\n"
                    + tail(service.log, 8)
                )
                await service.start()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.services.values()))
