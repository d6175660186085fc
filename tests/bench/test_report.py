"""The benchmark's table: medians and maxima, targets, verdicts, rows in the issue's order."""

from __future__ import annotations

from bench.report import Figure, Table, Target, amount


def test_a_figure_is_the_median_of_its_runs_or_their_maximum() -> None:
    assert Figure("1", "upload", "s", [1.0, 3.0, 2.0]).value == 2.0
    assert Figure("1", "rss", "MB", [90.0, 120.0, 100.0], statistic="max").value == 120.0
    assert Figure("5", "replay", "", note="not available yet").value is None


def test_the_verdict_compares_the_figure_with_its_target() -> None:
    assert Figure("1", "upload", "s", [1.2], Target("<=", 1.5)).verdict == "met"
    assert Figure("1", "upload", "s", [1.6], Target("<=", 1.5)).verdict == "NOT MET"
    assert Figure("3", "scorer", "events/s", [40_000], Target(">=", 50_000)).verdict == "NOT MET"
    assert Figure("3", "scorer", "events/s", [40_000]).verdict == ""


def test_the_table_lists_rows_in_order_with_notes_in_place_of_missing_figures() -> None:
    table = Table()
    table.add(Figure("6", "COPY", "rows/s", [300_000.0, 310_000.0, 290_000.0]))
    table.add(Figure("5", "replay", "", note="not available yet: no scorer/replay.py"))
    table.add(Figure("1", "upload", "s", [1.25], Target("<=", 1.5)))
    lines = table.render().splitlines()
    assert lines[0].split() == ["#", "measure", "figure", "runs", "target", "verdict"]
    assert [line.split()[0] for line in lines[2:]] == ["1", "5", "6"]
    assert lines[2].split()[-5:] == ["1", "≤", "1.50", "s", "met"]
    assert "not available yet: no scorer/replay.py" in lines[3]
    assert "300,000 rows/s" in lines[4]
    assert "median of 3" in lines[4]


def test_amounts_read_as_their_units() -> None:
    assert amount(1.234, "s") == "1.23 s"
    assert amount(97.6, "MB") == "98 MB"
    assert amount(0.3456, "x") == "0.35"
    assert amount(123456.7, "rows/s") == "123,457 rows/s"
