"""``python -m bench`` (``make bench``): the pipeline's throughput, in one table.

    source scripts/env.sh && .venv/bin/python -m bench [--quick] [--events N] [--runs N]

Needs the Kafka and Postgres of KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (``make bench``
starts the local ones if they are not running); creates its own databases and topics on
them and drops them at the end. Prints the table on stdout, progress on stderr, and
writes everything measured to bench-results/bench-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from bench import machine
from bench.harness import EVENTS, ROWS, Config, Results, run_all
from bench.processes import PROFILE_ENV, ROOT
from leadvibe.settings import Settings, SettingsError

QUICK = Config(file_size=1024 * 1024, events=20_000, import_runs=1, runs=1)
"""A smoke run (a minute or two)."""


def config_of(args: argparse.Namespace) -> Config:
    base = QUICK if args.quick else Config()
    runs = args.runs
    return Config(
        file_size=base.file_size,
        events=args.events or base.events,
        import_runs=runs or base.import_runs,
        runs=runs or base.runs,
        rows=frozenset(args.only.replace(",", "")) if args.only else ROWS,
    )


def parser() -> argparse.ArgumentParser:
    assert __doc__ is not None
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: a 1 MB file and 20,000 events, one run each",
    )
    p.add_argument(
        "--events",
        type=int,
        help=f"events for the scorer, trigger service, replay and COPY (default {EVENTS:,})",
    )
    p.add_argument(
        "--runs",
        type=int,
        help="runs of every measurement (default: 5 for the import, end to end and Kafka "
        "producer, 3 for those over --events)",
    )
    p.add_argument(
        "--only",
        metavar="ROWS",
        help="measure only these rows, e.g. 1,2 (default: all: the issue's 1 to 6, and 8, "
        "the scorer over Zipf-like leads)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every service under pyinstrument, a text profile of each into DIR "
        "(the figures are then a little slower)",
    )
    p.add_argument(
        "--out", type=Path, default=ROOT / "bench-results", help="folder of the JSON and logs"
    )
    return p


def report(results: Results, host: dict[str, object], command: str, started: datetime) -> str:
    c = results.config
    loads = ", ".join(f"{load:.1f}" for load in results.load.values())
    lines = [
        f"LeadVibe benchmark {started:%Y-%m-%d %H:%M} UTC, run {results.run_id}: {command}",
        f"machine: {machine.summary(host)}",
        f"load average (1 min) at the start {host['load_average']:.1f}, after each step {loads}",
        f"volumes: {c.file_size / 1024 / 1024:.0f} MB file, {c.events:,} events; "
        + ("the issue's targets apply" if c.full else "not the issue's volumes: no targets"),
        "",
        results.table.render(),
    ]
    if results.failures:
        lines += ["", "failed steps (logs in bench-results/logs):"]
        lines += [f"  {name}: {error}" for name, error in results.failures.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.events is not None and args.events < 1) or (args.runs is not None and args.runs < 1):
        print("python -m bench: --events and --runs must be at least 1", file=sys.stderr)
        return 2
    if args.only and not set(args.only.replace(",", "")) <= ROWS:
        print("python -m bench: --only takes rows 1 to 6 and 8, such as 1,2", file=sys.stderr)
        return 2
    try:
        base = Settings.from_env()
    except SettingsError as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2
    config = config_of(args)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(args.profile.resolve())
    command = os.environ.get("BENCH_COMMAND") or " ".join(
        ["python -m bench", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
    )
    host = machine.describe()
    started = datetime.now(UTC)
    results = uvloop.run(run_all(base, config, args.out / "logs"))
    text = report(results, host, command, started)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{started:%Y%m%d-%H%M%S}.json"
    document = {
        "command": command,
        "started_at": started.isoformat(),
        "run_id": results.run_id,
        "machine": host,
        "config": {
            "file_size": config.file_size,
            "events": config.events,
            "import_runs": config.import_runs,
            "runs": config.runs,
            "people": config.people,
            "rows": sorted(config.rows),
            "targets_apply": config.full,
        },
        "figures": [f.as_json() for f in results.table.figures],
        "runs": results.details,
        "load_average_after_step": results.load,
        "failures": results.failures,
        "table": text,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nJSON: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
