"""Progress lines: done / total, rate, time left."""

from __future__ import annotations

import io
import re

from scorer.progress import Report, describe, finished


def test_a_line_says_how_far_how_fast_and_how_long_still() -> None:
    assert describe("reading", 120_000, 400_000, 2.0) == (
        "reading: 120,000 / 400,000 records (30%), 60,000/s, 5 s left"
    )
    assert describe("reading", 0, 400_000, 0.0) == "reading: 0 / 400,000 records (0%)"
    assert describe("waiting", 0, None, 1.5, what="") == "waiting: 1.5 s"
    assert describe("rows", 7, None, 1.5) == "rows: 7 records, 1.5 s"
    assert describe("reading", 10, 1_000_000, 1.0).endswith("27 h 46 min left")
    assert describe("reading", 1_000, 100_000, 1.0).endswith("1 min 39 s left")


def test_a_phase_ends_with_its_count_and_time() -> None:
    assert finished("switching", 6, 2.0, what="projections") == (
        "switching: 6 projections in 2.0 s (3/s)"
    )
    assert finished("catching up", 0, 0.1) == "catching up: 0 records in 0.1 s"
    assert finished("waiting", 0, 0.25, what="") == "waiting: 0.2 s"


def test_the_report_writes_lines_with_the_task_name() -> None:
    out = io.StringIO()
    report = Report("replay", out, interval=0.0)
    report.phase("reading", 10)
    report.advance(4)
    report.phase("rebuilding", 2, what="steps")
    report.end()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("replay: reading: 4 / 10 records (40%)")
    assert lines[1].startswith("replay: reading: 4 records in ")
    assert lines[2].startswith("replay: rebuilding: 0 steps in ")


def test_on_a_terminal_each_phase_is_a_bar_left_complete() -> None:
    out = io.StringIO()
    report = Report("rescore", out, terminal=True)
    report.phase("reading", 10)
    report.advance(10)
    report.phase("waiting for the scorer", what="")
    report.end()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # colours, cursor
    assert "rescore: reading" in screen
    assert "10/10 records" in screen
    assert "0:00:00 left" in screen
    assert "rescore: waiting for the scorer" in screen
    assert "━" in screen  # rich's bar


def test_a_stream_that_is_no_terminal_gets_plain_lines() -> None:
    out = io.StringIO()
    report = Report("replay", out)
    report.phase("reading", 3)
    report.advance(3)
    report.end()
    assert "\x1b[" not in out.getvalue()
    assert out.getvalue().startswith("replay: reading: 3 records in ")
