"""Kafka and Postgres of the fault suite's own, to kill and start again.

Started with the project's scripts (``scripts/postgres.sh``, ``scripts/kafka.sh``) in a
temporary ``LEADVIBE_LOCAL_DIR`` on ports free at run time, so that killing them never
touches the servers the other tests share. Only the processes started here are killed,
by the pid each server records in its own folder: the postmaster's in ``postmaster.pid``,
the broker's (the java process ``kafka.sh`` spawned) in ``kafka.pid``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.processes import ROOT, local_dir
from bench.processes import free_port as any_free_port
from tests.waiting import wait_for

SCRIPTS = ROOT / "scripts"
PG_BINARIES = Path("/usr/lib/postgresql")
START_TIMEOUT = 120.0
"""Seconds a server has to start: a JVM on a busy 2-core machine is slow to come up."""
PARTITIONS = 4
"""Partitions of the events and scored topics: two for each of the two scorers."""
DATABASE = "leadvibe"


CONVENTIONAL_PORTS = (range(8000, 9000), range(39000, 40000), range(55000, 56000))
"""Where the project's stacks listen by convention (LEADVIBE_PORT, KAFKA_PORT, PG_PORT, and
each session's own near them): a port free now there may be another stack's that is
merely down, and taking it would break that stack's next start."""


def free_port() -> int:
    """A port free on 127.0.0.1 now (bind-to-0), outside CONVENTIONAL_PORTS."""
    while True:
        port = any_free_port()
        if not any(port in ports for ports in CONVENTIONAL_PORTS):
            return port


def kafka_libs() -> Path:
    """The Kafka jars ``make test`` fetched (scripts/kafka.sh fetch), shared by link."""
    return local_dir() / "kafka" / "libs"


def unavailable() -> str | None:
    """Why the local servers cannot be started here, or None."""
    if shutil.which("java") is None:
        return "no java on PATH (Kafka runs from its jars)"
    if not (kafka_libs() / ".complete").exists():
        return f"Kafka's jars are not in {kafka_libs()} (`make test` or scripts/kafka.sh fetch)"
    if os.environ.get("PG_BIN"):
        if not (Path(os.environ["PG_BIN"]) / "initdb").exists():
            return f"no initdb in PG_BIN={os.environ['PG_BIN']}"
    elif not any(PG_BINARIES.glob("*/bin/initdb")):
        return f"no PostgreSQL server binaries under {PG_BINARIES}/*/bin (or set PG_BIN)"
    if os.getuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser (initdb refuses root)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _gone(pid: int, ports: tuple[int, ...], what: str) -> None:
    """Until the process has exited and its ports are closed: a killed JVM's main thread
    exits first, and the sockets close only once its other threads have."""

    async def dead() -> bool:
        return not _alive(pid) and not any(_listening(p) for p in ports)

    await wait_for(dead, timeout=30, interval=0.02, what=f"{what} (pid {pid}) to exit")


@dataclass
class Servers:
    """One Postgres and one Kafka broker in ``folder``; each can be killed and restarted."""

    folder: Path
    pg_port: int
    kafka_port: int
    controller_port: int

    @property
    def kafka_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def database_url(self, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.pg_port}/{DATABASE}"

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "PG_DB")
        }
        return {
            **env,
            "LEADVIBE_LOCAL_DIR": str(self.folder),
            "PG_PORT": str(self.pg_port),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_HEAP": "256m",
            # Less JIT compiling: about half the CPU to start a broker (scripts/kafka.sh).
            "KAFKA_JVM_OPTS": "-XX:TieredStopAtLevel=1",
        }

    def service_env(self) -> dict[str, str]:
        """What a service (or the ``leadvibe`` command) needs to use these servers."""
        return {
            **self._env(),
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "DATABASE_URL": self.database_url(),
            "LEADVIBE_EVENTS_PARTITIONS": str(PARTITIONS),
        }

    async def _run(self, *command: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env or self._env(),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode(errors="replace")

    async def _script(self, script: str, action: str) -> None:
        code, out = await self._run(str(SCRIPTS / script), action)
        if code != 0:
            raise RuntimeError(f"{script} {action} failed ({code}):\n{out}")

    async def leadvibe(self, *args: str) -> None:
        """``leadvibe ARGS`` (the operator's command) against these servers."""
        code, out = await self._run(
            sys.executable,
            "-c",
            "import sys; from leadvibe.cli import main; sys.exit(main())",
            *args,
            env=self.service_env(),
        )
        if code != 0:
            raise RuntimeError(f"leadvibe {' '.join(args)} failed ({code}):\n{out}")

    # Postgres

    def postmaster_pid(self) -> int:
        pidfile = self.folder / "postgres" / "data" / "postmaster.pid"
        return int(pidfile.read_text().split("\n", 1)[0])

    async def start_postgres(self) -> None:
        """scripts/postgres.sh start, again until it succeeds: right after a kill -9, the
        old server's backends may hold its shared memory for a moment, and the new
        postmaster refuses to start until they have noticed and exited."""

        async def started() -> bool:
            code, out = await self._run(str(SCRIPTS / "postgres.sh"), "start")
            self.last_postgres_output = out
            return code == 0

        await wait_for(started, timeout=START_TIMEOUT, interval=0.2, what="Postgres to start")

    async def kill_postgres(self) -> None:
        """kill -9 the postmaster; return once it is gone."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        await _gone(pid, (self.pg_port,), "the postmaster")

    async def stop_postgres(self) -> None:
        """An immediate shutdown (SIGQUIT): no checkpoint, the data is thrown away."""
        with suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = self.postmaster_pid()
            os.kill(pid, signal.SIGQUIT)
            await _gone(pid, (self.pg_port,), "the postmaster")

    # Kafka

    def kafka_pid(self) -> int:
        """The broker's java process, as scripts/kafka.sh recorded it when it started it."""
        pid = int((self.folder / "kafka" / "kafka.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if str(self.folder).encode() not in cmdline or b"kafka.Kafka" not in cmdline:
            raise RuntimeError(f"pid {pid} is not the broker started in {self.folder}")
        return pid

    async def start_kafka(self) -> None:
        await self._script("kafka.sh", "start")
        self.kafka_pid()  # ours, not another broker that took the port

    async def kill_kafka(self) -> None:
        """kill -9 the broker; return once it is gone."""
        pid = self.kafka_pid()
        os.kill(pid, signal.SIGKILL)
        await _gone(pid, (self.kafka_port, self.controller_port), "the broker")

    async def stop_kafka(self) -> None:
        with suppress(FileNotFoundError, ValueError, ProcessLookupError, RuntimeError):
            await self.kill_kafka()


def _new_folder() -> Path:
    """LEADVIBE_LOCAL_DIR of the suite's servers, the Kafka jars linked into it."""
    folder = Path(tempfile.mkdtemp(prefix="leadvibe-faults-"))
    folder.chmod(0o755)  # postgres.sh runs the server as the postgres user when we are root
    (folder / "kafka").mkdir()
    (folder / "kafka" / "libs").symlink_to(kafka_libs())
    return folder


@asynccontextmanager
async def local_servers() -> AsyncIterator[Servers]:
    """Postgres and Kafka in a temporary folder on free ports, migrated, with the topics;
    both stopped and the folder removed at the end."""
    folder = _new_folder()
    kafka_port = free_port()
    servers = Servers(folder, free_port(), kafka_port, free_port())
    try:

        async def postgres() -> None:
            await servers.start_postgres()
            await servers.leadvibe("migrate")

        async def kafka() -> None:
            await servers.start_kafka()
            await servers.leadvibe("topics", "create")

        await asyncio.gather(postgres(), kafka())
        yield servers
    finally:
        await asyncio.gather(servers.stop_kafka(), servers.stop_postgres())
        shutil.rmtree(folder, ignore_errors=True)
