"""Progress of a long operator task: done / total, rate, time left.

A task goes through named phases; a phase with a total says how far along it is. On a
terminal each phase is a progress bar drawn by ``rich`` (which redraws it in place and
leaves it on screen, complete, when the phase ends). Anywhere else (a pipe, a log file,
CI) the reporter writes plain lines: at most one a second while a phase runs, and a last
line when it ends, with its count and how long it took.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bars


class Progress(Protocol):
    def phase(self, name: str, total: int | None = None, what: str = "records") -> None:
        """A new phase begins (the previous one, if any, ends)."""

    def advance(self, done: int = 1) -> None:
        """``done`` more units of the current phase are done."""

    def end(self) -> None:
        """The current phase ends."""


class Silent:
    """Progress nobody watches."""

    def phase(self, name: str, total: int | None = None, what: str = "records") -> None:
        pass

    def advance(self, done: int = 1) -> None:
        pass

    def end(self) -> None:
        pass


def describe(name: str, done: int, total: int | None, elapsed: float, what: str = "records") -> str:
    """One progress line: ``reading: 120,000 / 400,000 records (30%), 85,000/s, 3 s left``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if not what:
        return f"{name}: {elapsed:.1f} s"
    if total is None:
        return f"{name}: {done:,} {what}, {elapsed:.1f} s"
    line = f"{name}: {done:,} / {total:,} {what}"
    if total:
        line += f" ({100 * done // total}%)"
    if rate > 0:
        line += f", {rate:,.0f}/s"
        if done < total:
            line += f", {_duration((total - done) / rate)} left"
    return line


def finished(name: str, done: int, elapsed: float, what: str = "records") -> str:
    """The line a phase ends with: ``reading: 400,000 records in 4.7 s (85,000/s)``.

    A phase that counts nothing (``what`` empty) says how long it took.
    """
    if not what:
        return f"{name}: {elapsed:.1f} s"
    line = f"{name}: {done:,} {what} in {elapsed:.1f} s"
    if done and elapsed > 0:
        line += f" ({done / elapsed:,.0f}/s)"
    return line


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Report:
    """Progress written to ``stream`` (stderr by default), prefixed with the task's name:
    bars when ``stream`` is a terminal (or ``terminal`` is true), else plain lines."""

    def __init__(
        self,
        task: str,
        stream: TextIO | None = None,
        *,
        interval: float = 1.0,
        terminal: bool | None = None,
    ) -> None:
        stream = stream or sys.stderr
        if terminal is None:
            terminal = stream.isatty()
        self._shown: Progress = _Bars(task, stream) if terminal else Lines(task, stream, interval)

    def phase(self, name: str, total: int | None = None, what: str = "records") -> None:
        self._shown.phase(name, total, what)

    def advance(self, done: int = 1) -> None:
        self._shown.advance(done)

    def end(self) -> None:
        self._shown.end()


class _Bars:
    """Each phase a ``rich`` progress bar: the name, the bar, done/total, rate, time left."""

    def __init__(self, task: str, stream: TextIO) -> None:
        self.task = task
        self.console = Console(file=stream, force_terminal=True)
        self._bars: Bars | None = None
        self._id: TaskID | None = None
        self._total: int | None = None

    def phase(self, name: str, total: int | None = None, what: str = "records") -> None:
        self.end()
        self._bars = Bars(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(f"{what} •" if what else "•"),
            TimeElapsedColumn(),
            TextColumn("•"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=self.console,
        )
        self._total = total
        self._id = self._bars.add_task(f"{self.task}: {name}", total=total)
        self._bars.start()

    def advance(self, done: int = 1) -> None:
        if self._bars is not None and self._id is not None:
            self._bars.advance(self._id, done)

    def end(self) -> None:
        if self._bars is None or self._id is None:
            return
        if self._total is None:  # a phase that counts nothing, or knew no total: full now
            done = self._bars.tasks[0].completed
            self._bars.update(self._id, total=max(done, 1), completed=max(done, 1))
        self._bars.stop()
        self._bars = self._id = None


class Lines:
    """Progress as plain lines, for a stream that is no terminal."""

    def __init__(self, task: str, stream: TextIO, interval: float = 1.0) -> None:
        self.task = task
        self.stream = stream
        self.interval = interval
        self._name: str | None = None
        self._what = "records"
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._shown = 0.0

    def phase(self, name: str, total: int | None = None, what: str = "records") -> None:
        self.end()
        self._name, self._total, self._what = name, total, what
        self._done = 0
        self._started = self._shown = time.monotonic()

    def advance(self, done: int = 1) -> None:
        self._done += done
        now = time.monotonic()
        if self._name is not None and now - self._shown >= self.interval:
            self._shown = now
            line = describe(self._name, self._done, self._total, now - self._started, self._what)
            self._write(line)

    def end(self) -> None:
        if self._name is None:
            return
        elapsed = time.monotonic() - self._started
        self._write(finished(self._name, self._done, elapsed, self._what))
        self._name = None

    def _write(self, line: str) -> None:
        self.stream.write(f"{self.task}: {line}\n")
        self.stream.flush()
