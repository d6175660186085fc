"""The benchmark's table: one line per figure, its runs, its target and whether it is met."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    op: Literal["<=", ">="]
    value: float

    def met(self, figure: float) -> bool:
        return figure <= self.value if self.op == "<=" else figure >= self.value


@dataclass(frozen=True)
class Figure:
    """One line of the table: a measured quantity over its runs."""

    row: str
    """The issue's row: "1" to "6"."""
    label: str
    unit: str
    """``s``, ``MB``, ``x`` (a ratio) or a rate such as ``rows/s``."""
    values: Sequence[float] = ()
    """One per run."""
    target: Target | None = None
    statistic: Literal["median", "max"] = "median"
    note: str = ""
    """Why there is no figure ("not available yet: ..."), or what to know about it."""

    @property
    def value(self) -> float | None:
        if not self.values:
            return None
        if self.statistic == "max":
            return max(self.values)
        return statistics.median(self.values)

    @property
    def verdict(self) -> str:
        value = self.value
        if self.target is None or value is None:
            return ""
        return "met" if self.target.met(value) else "NOT MET"

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "label": self.label,
            "unit": self.unit,
            "statistic": self.statistic,
            "value": self.value,
            "values": list(self.values),
            "target": None
            if self.target is None
            else {"op": self.target.op, "value": self.target.value},
            "verdict": self.verdict or None,
            "note": self.note or None,
        }


def amount(value: float, unit: str) -> str:
    """A figure as the table shows it."""
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:,.0f} {unit}"


def _target_text(figure: Figure) -> str:
    if figure.target is None:
        return ""
    sign = "≤" if figure.target.op == "<=" else "≥"
    return f"{sign} {amount(figure.target.value, figure.unit)}"


@dataclass
class Table:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def render(self) -> str:
        header = ("#", "measure", "figure", "runs", "target", "verdict")
        lines = []
        for f in sorted(self.figures, key=lambda f: f.row):
            value = f.value
            shown = amount(value, f.unit) if value is not None else f.note
            lines.append((f.row, f.label, shown, _runs(f), *_rest(f)))
        widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
        out = []
        for cells in [header, *lines]:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)))
            if cells is header:
                out.append("  ".join("-" * w for w in widths))
        notes = [f"  {f.label}: {f.note}" for f in self.figures if f.value is not None and f.note]
        if notes:
            out += ["", "notes:", *notes]
        return "\n".join(line.rstrip() for line in out)


def _runs(figure: Figure) -> str:
    if figure.value is None:
        return ""
    if figure.unit == "x":
        return "of medians"
    if len(figure.values) == 1:
        return "1"
    return f"{figure.statistic} of {len(figure.values)}"


def _rest(figure: Figure) -> tuple[str, str]:
    return _target_text(figure), figure.verdict
