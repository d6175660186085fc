"""scripts/supervise.sh, the restart loop of ``make run``, driven with stand-in commands:
a service that exits is started again after a backoff with a line saying which and how;
SIGTERM to the supervisor stops the service it runs and restarts nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _supervise(tmp_path: Path, command: str, **env: str) -> subprocess.Popen[str]:
    script = f'source "{ROOT}/scripts/supervise.sh"; supervise stand-in "{tmp_path}/log" {command}'
    return subprocess.Popen(
        ["bash", "-c", script],
        env={**os.environ, "SUPERVISE_BACKOFF": "0.05", "SUPERVISE_BACKOFF_MAX": "0.2", **env},
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition()`` (no fixed sleeps) until true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """The file the stand-in command adds a line to at each run."""
    return tmp_path / "runs"


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_command_that_exits_is_restarted_with_a_line_saying_which_and_how(
    tmp_path: Path, runs: Path
) -> None:
    supervisor = _supervise(tmp_path, f"sh -c 'echo run >> {runs}; exit 3'")
    try:
        _wait_until(lambda: _count(runs) >= 4)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=20)
    assert supervisor.returncode is not None
    lines = [line for line in stderr.splitlines() if line.startswith("supervise:")]
    assert len(lines) >= 3
    assert lines[0] == "supervise: stand-in exited with status 3; restarting in 0.05 s (restart 1)"
    assert lines[1] == "supervise: stand-in exited with status 3; restarting in 0.1 s (restart 2)"
    assert "restarting in 0.2 s (restart 3)" in lines[2]  # the backoff, capped
    assert "stand-in exited with status 3" in (tmp_path / "log").read_text()


def test_sigterm_stops_the_running_command_and_restarts_nothing(tmp_path: Path, runs: Path) -> None:
    pid_file = tmp_path / "pid"
    supervisor = _supervise(
        tmp_path, f"sh -c 'echo run >> {runs}; echo $$ > {pid_file}; exec sleep 600'"
    )
    _wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=20)
    assert "restarting" not in stderr
    assert _count(runs) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_command_that_ignores_sigterm_is_killed_past_the_grace(
    tmp_path: Path, runs: Path
) -> None:
    pid_file = tmp_path / "pid"
    supervisor = _supervise(
        tmp_path,
        f"sh -c 'trap \"\" TERM; echo $$ > {pid_file}; while :; do sleep 0.05; done'",
        STOP_GRACE="1",
    )
    _wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=20)
    assert "restarting" not in stderr

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    _wait_until(gone)


def test_sigint_alone_stops_nothing(tmp_path: Path, runs: Path) -> None:
    """Ctrl-C reaches every process of ``make run``; run.sh answers it with SIGTERM to
    the supervisors, which must still be there to stop their service and wait for it."""
    pid_file = tmp_path / "pid"
    supervisor = _supervise(
        tmp_path, f"sh -c 'echo run >> {runs}; echo $$ > {pid_file}; exec sleep 600'"
    )
    _wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    supervisor.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        supervisor.wait(timeout=0.5)  # still supervising
    supervisor.send_signal(signal.SIGTERM)
    _, stderr = supervisor.communicate(timeout=20)
    assert "restarting" not in stderr
    assert _count(runs) == 1
