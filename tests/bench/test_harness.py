"""Every step of ``make bench`` on tiny volumes, so that the benchmark does not rot.

The real services run as processes against the real Kafka and Postgres, as in the
benchmark; only the volumes are small (a 64 KB file, 2,000 events, one run each).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.harness import Config, run_all
from leadvibe.settings import Settings

pytestmark = pytest.mark.integration

TINY = Config(file_size=64 * 1024, events=2_000, import_runs=1, runs=1, live_seconds=1.0)


async def test_every_row_is_measured_on_tiny_volumes(
    base_settings: Settings, tmp_path: Path
) -> None:
    results = await run_all(base_settings, TINY, tmp_path / "logs")

    assert results.failures == {}
    figures = results.table.figures
    assert {f.row for f in figures} == {"1", "2", "3", "4", "5", "6", "7", "8"}
    cpu = {f.row: f for f in figures if f.label.startswith("  CPU µs per")}
    assert set(cpu) == {"1", "2", "3", "4", "5", "8"}
    assert "gateway" in cpu["1"].label
    assert "postgres" in cpu["1"].label
    for name in ("gateway", "scorer", "trigger_service", "postgres", "kafka"):
        assert name in cpu["2"].label, cpu["2"].label
    assert "replay" in cpu["5"].label
    for figure in figures:
        if figure.note.startswith("not available"):
            continue  # Kafka's producer benchmark, where java or its jars are missing
        assert figure.value is not None, figure
        if figure.unit in ("errors", "events"):  # row 7's counts of what went wrong
            assert figure.value == 0, figure
        else:
            assert figure.value > 0, figure
        assert math.isfinite(figure.value), figure
        assert figure.verdict == ""  # not the volumes: no targets
    assert results.details["scorer alone"][0]["applied"] == TINY.events
    assert results.details["scorer alone, Zipf"][0]["applied"] == TINY.events
    # Zipf-like: the same events over far fewer leads than the uniform draw reaches.
    assert (
        results.details["scorer alone, Zipf"][0]["leads"]
        < results.details["scorer alone"][0]["leads"]
    )
    assert results.details["end to end"][0]["imported"] > 900
    assert "scorer alone: 2,000 events" in results.table.render()
