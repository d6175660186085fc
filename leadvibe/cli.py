"""The ``leadvibe`` command: operator tasks around the services.

leadvibe token create --org ORG --unit UNIT   print a new API token (and nothing else)
leadvibe migrate                              apply the database migrations
leadvibe topics create                        create the Kafka topics
leadvibe replay [--unit UNIT]                 rebuild the projections from the topics
leadvibe rescore [--unit UNIT]                every score again under today's rules
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import asyncpg
from aiokafka.errors import KafkaError

from leadvibe.db import migrate
from leadvibe.settings import Settings, SettingsError
from leadvibe.tenancy import create_token
from leadvibe.topics import Replication, ReplicationError, ensure_topics
from scorer.progress import Report
from scorer.replay import ReplayError, replay, rescore


async def _token_create(settings: Settings, org: str, unit: str) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        print(await create_token(conn, org, unit))
    finally:
        await conn.close()


async def _migrate(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}", file=sys.stderr)


async def _topics_create(settings: Settings) -> None:
    created = await ensure_topics(
        settings.kafka_bootstrap_servers,
        settings.topics,
        settings.events_partitions,
        Replication(settings.replication_factor, settings.min_insync_replicas),
    )
    print(f"topics created: {', '.join(created) or 'none (all exist)'}", file=sys.stderr)


async def _replay(settings: Settings, command: str, unit: str | None) -> int:
    run = rescore if command == "rescore" else replay
    try:
        summary = await run(settings, unit, progress=Report(command))
    except (ReplayError, KafkaError) as exc:
        # Before the switch, nothing changed; while publishing the replay records after it,
        # those not sent are sent by the next run, which finds the same differences.
        print(f"leadvibe {command}: {exc}", file=sys.stderr)
        return 1
    for line in summary.lines():
        print(f"{command}: {line}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadvibe", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="action", required=True)
    create = token_commands.add_parser(
        "create", help="create the organisation and unit if needed; print a new token"
    )
    create.add_argument("--org", required=True, help="organisation name")
    create.add_argument("--unit", required=True, help="organizational unit name (made active)")

    commands.add_parser("migrate", help="apply the database migrations not yet applied")

    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_subparsers(dest="action", required=True).add_parser(
        "create", help="create the topics that do not exist yet"
    )

    for name, help_text in (
        ("replay", "rebuild the projections (leads, aliases, events, scores) from the topics"),
        ("rescore", "recompute every score under today's rules (a replay)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--unit", metavar="UNIT", help="a unit id (default: every unit)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"leadvibe: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "token":
            asyncio.run(_token_create(settings, args.org, args.unit))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "topics":
            asyncio.run(_topics_create(settings))
        elif args.command in ("replay", "rescore"):
            return asyncio.run(_replay(settings, args.command, args.unit))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"leadvibe: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except ReplicationError as exc:
        print(f"leadvibe: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
