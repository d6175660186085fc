"""``python -m bench``'s flags: the issue's volumes by default, --quick, --events, --runs."""

from __future__ import annotations

from bench.__main__ import QUICK, config_of, parser
from bench.harness import EVENTS, Config
from bench.imports import FILE_SIZE


def test_the_default_is_the_issue_s_volumes_and_runs() -> None:
    config = config_of(parser().parse_args([]))
    assert config == Config(file_size=FILE_SIZE, events=EVENTS, import_runs=5, runs=3)
    assert config.full
    assert config.people == 100_000


def test_quick_is_one_small_run_of_each_and_flags_override_it() -> None:
    assert config_of(parser().parse_args(["--quick"])) == QUICK
    assert not QUICK.full
    config = config_of(parser().parse_args(["--quick", "--events", "5000", "--runs", "2"]))
    assert (config.file_size, config.events, config.import_runs, config.runs) == (
        QUICK.file_size,
        5000,
        2,
        2,
    )
