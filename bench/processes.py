"""The processes a benchmark runs and watches: services, their memory and CPU (Linux /proc).

Each service runs as ``python -m <module>``, as in production, with the benchmark's
settings in its environment and its output in a log file; it is stopped with SIGTERM
(so it drains) and killed if it has not exited within a deadline.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from leadvibe.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCORERS = os.cpu_count() or 1
"""Scorer processes the benchmark runs side by side: one per core, as ``make run`` does."""
STOP_TIMEOUT = 30.0
"""Seconds a service has to drain and exit after SIGTERM before it is killed."""


def local_dir() -> Path:
    """Where scripts/stack.sh keeps the local Kafka and Postgres (LEADVIBE_LOCAL_DIR)."""
    return Path(os.environ.get("LEADVIBE_LOCAL_DIR") or ROOT / ".local")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a service pointed at ``settings``' database and topics."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "LEADVIBE_TOPIC_NAMESPACE": settings.topics.namespace,
        "LEADVIBE_EVENTS_PARTITIONS": str(settings.events_partitions),
        "LEADVIBE_LOG_LEVEL": "warning",
        # Not the health port of the shell's own stack: several consumers would share it,
        # and all but the first would exit.
        "LEADVIBE_HEALTH_PORT": "",
        **extra,
    }


@asynccontextmanager
async def running(
    module: str,
    env: Mapping[str, str],
    log: Path,
    *,
    wrapper: Sequence[str] = (),
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python [wrapper...] -m module`` until the block ends; output appended to ``log``.

    ``wrapper`` goes between the interpreter and ``-m module`` (a profiler: ``-m
    pyinstrument -o out.txt``); by default, :func:`profiler`'s.
    """
    wrapper = wrapper or profiler(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *wrapper,
            "-m",
            module,
            env=dict(env),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        yield process
    finally:
        # uvicorn re-raises the signal it stopped on: SIGINT then ends the process with a
        # KeyboardInterrupt, after which pyinstrument still writes its profile.
        await stop(process, signal.SIGINT if wrapper else signal.SIGTERM)


PROFILE_ENV = "BENCH_PROFILE"
"""A folder (``python -m bench --profile DIR``): every service the benchmark starts then
runs under pyinstrument (dev extra), which writes a text profile there when it stops,
named as its log."""


def profiler(log: Path) -> tuple[str, ...]:
    folder = os.environ.get(PROFILE_ENV)
    if not folder:
        return ()
    out = str(Path(folder) / f"{log.stem}.txt")
    # A sample every 5 ms rather than every 1: a fifth of the overhead, the same picture.
    return ("-m", "pyinstrument", "-i", "0.005", "-r", "text", "-o", out)


async def stop(process: asyncio.subprocess.Process, sig: signal.Signals = signal.SIGTERM) -> None:
    """``sig``, then SIGKILL if it has not exited within STOP_TIMEOUT."""
    if process.returncode is not None:
        return
    with suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), timeout=STOP_TIMEOUT)
    except TimeoutError:
        with suppress(ProcessLookupError):
            process.kill()
        await asyncio.wait_for(process.wait(), timeout=STOP_TIMEOUT)


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a service's log, to say why it failed."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def memory_mb(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since start or the last reset) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no {field} for process {pid}")


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux 4.0+); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU time of each process so far; those gone are left out."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def cpu_used(name: str, before: Mapping[int, float], database: str | None = None) -> float:
    """CPU seconds used since ``before`` by the server ``name`` (new processes included)."""
    now = cpu_seconds(server_pids(name, database))
    return sum(t - before.get(pid, 0.0) for pid, t in now.items())


SERVERS = ("postgres", "kafka")
"""The local stack's servers, whose CPU a consumer's benchmark counts beside its own."""


def servers_cpu(database: str) -> dict[str, dict[int, float]]:
    """Each server's CPU time so far, by process (of Postgres, only those serving
    ``database``): the ``before`` of :func:`servers_cpu_used`."""
    return {name: cpu_seconds(server_pids(name, database)) for name in SERVERS}


def servers_cpu_used(before: Mapping[str, Mapping[int, float]], database: str) -> dict[str, float]:
    """CPU seconds each server used since ``before`` (:func:`servers_cpu`)."""
    return {name: cpu_used(name, taken, database) for name, taken in before.items()}


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append((int(entry.name), int(stat[1]), cmdline))
    return found


# The database of a client backend ("postgres: USER DATABASE HOST(PORT) STATE") or of an
# autovacuum worker ("postgres: autovacuum worker DATABASE").
_OF_DATABASE = re.compile(
    r"^postgres: (?:autovacuum worker (\S+)|\S+ (\S+) (?:[\d.:a-f]+\(\d+\)|\[local\]))"
)


def server_pids(name: str, database: str | None = None) -> list[int]:
    """The local stack's own processes (scripts/stack.sh), not another Kafka or Postgres
    that may run on the machine: the broker started from the local folder, and the
    postmaster of its Postgres with its children. With ``database``, of the children only
    the server's own (writers, checkpointer) and those working for that database (its
    clients' backends, its autovacuum), not those of other clients sharing the server.
    None when the servers are not the local stack's (containers)."""
    local = local_dir()
    processes = _processes()
    if name == "kafka":
        return [pid for pid, _, cmd in processes if "kafka.Kafka" in cmd and str(local) in cmd]
    try:
        postmaster = int((local / "postgres/data/postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    found = []
    for pid, parent, cmd in processes:
        if postmaster not in (pid, parent):
            continue
        of = _OF_DATABASE.match(cmd)
        if database is None or of is None or database in of.groups():
            found.append(pid)
    return found


class CpuMeter:
    """The CPU time one run costs, by component: the processes named at the start (a
    service's several processes add up under one name), the benchmark's own process when
    it does the work itself (``this``), and the local Postgres (its processes serving
    ``database``) and Kafka. :meth:`used` gives the CPU seconds of each since the start.
    """

    def __init__(
        self,
        database: str,
        processes: Mapping[str, Sequence[int]] | None = None,
        *,
        this: str | None = None,
    ) -> None:
        self.database = database
        self.processes = {name: list(pids) for name, pids in (processes or {}).items()}
        self.this = this
        self._own = os.times()
        self._before = {name: cpu_seconds(pids) for name, pids in self.processes.items()}
        self._servers = servers_cpu(database)

    def used(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, pids in self.processes.items():
            before = self._before[name]
            used[name] = sum(t - before.get(pid, 0.0) for pid, t in cpu_seconds(pids).items())
        if self.this is not None:
            now = os.times()
            used[self.this] = now.user + now.system - self._own.user - self._own.system
        used.update(servers_cpu_used(self._servers, self.database))
        return used


def load_average() -> float:
    """The 1-minute load average: how busy the shared machine was around a run."""
    return os.getloadavg()[0]
