"""Progress of a long operator task, as lines on a terminal: done / total, rate, time left.

A task goes through named phases; a phase with a total says how far along it is. The
reporter writes at most one line a second (overwriting it in place on a terminal), and a
last line when a phase ends, with its count and how long it took.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


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
    """Progress written to ``stream`` (stderr by default), prefixed with the task's name."""

    def __init__(self, task: str, stream: TextIO | None = None, *, interval: float = 1.0) -> None:
        self.task = task
        self.stream = stream or sys.stderr
        self.interval = interval
        self._overwrite = self.stream.isatty()
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
            self._write(line, final=False)

    def end(self) -> None:
        if self._name is None:
            return
        elapsed = time.monotonic() - self._started
        self._write(finished(self._name, self._done, elapsed, self._what), final=True)
        self._name = None

    def _write(self, line: str, *, final: bool) -> None:
        text = f"{self.task}: {line}"
        if self._overwrite:
            self.stream.write(f"\r\x1b[K{text}" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
