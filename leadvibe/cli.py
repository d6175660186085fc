"""The ``leadvibe`` command: operator tasks around the services.

leadvibe token create --org ORG --unit UNIT   print a new API token (and nothing else)
leadvibe unit list [--org ORG]                every unit: organisation, name, id
leadvibe unit create --org ORG --unit NAME    a new unit; print its id
leadvibe migrate                              apply the database migrations
leadvibe topics create                        create the Kafka topics
leadvibe replay [--unit UNIT]                 rebuild the projections from the topics
leadvibe rescore [--unit UNIT]                every score again under today's rules
leadvibe aliases collisions [--unit UNIT]     aliases stored under a value today's rule changes

Every ``--unit`` of an existing unit takes its name or its id (``ou_...``); ``--org``
picks among organisations that have a unit of the same name. ``--json`` prints the result
as one JSON document on standard output, for scripts; messages and progress go to
standard error either way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
from aiokafka.errors import KafkaError

from leadvibe.db import migrate
from leadvibe.logs import configure_logging
from leadvibe.settings import Settings, SettingsError
from leadvibe.tenancy import (
    Unit,
    UnitError,
    create_unit,
    ensure_org,
    issue_token,
    resolve_unit,
    units,
)
from leadvibe.topics import Replication, ReplicationError, ensure_topics
from scorer import alias_collisions
from scorer.progress import Report
from scorer.replay import ReplayError, ReplaySummary, replay, rescore


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _unit_json(unit: Unit) -> dict[str, Any]:
    return {
        "unit_id": unit.unit_id,
        "name": unit.name,
        "org_id": unit.org_id,
        "org": unit.org_name,
        "created_at": unit.created_at,
    }


async def _token_create(settings: Settings, org: str, unit: str, as_json: bool) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        issued = await issue_token(conn, org, unit)
    finally:
        await conn.close()
    if as_json:
        _print_json(
            {
                "token": issued.token,
                "org_id": issued.org_id,
                "org": org,
                "unit_id": issued.unit_id,
                "unit": unit,
            }
        )
    else:
        print(issued.token)  # alone on stdout: scripts capture it
        _note(f"token create: active on unit {issued.unit_id} ({unit!r} of {org!r})")


async def _unit_list(settings: Settings, org: str | None, as_json: bool) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        found = await units(conn, org_name=org)
    finally:
        await conn.close()
    if as_json:
        _print_json([_unit_json(u) for u in found])
        return
    rows = [("ORGANISATION", "UNIT", "ID", "CREATED")] + [
        (u.org_name, u.name, u.unit_id, u.created_at.strftime("%Y-%m-%d %H:%M")) for u in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]))
    if not found:
        _note("unit list: no unit yet; 'leadvibe unit create --org ORG --unit NAME' makes one")


async def _unit_create(settings: Settings, org: str, name: str, as_json: bool) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        async with conn.transaction():
            org_id = await ensure_org(conn, org)
            unit = await create_unit(conn, org_id, name)
        if unit is None:
            existing = await resolve_unit(conn, name, org=org)
            _note(f"leadvibe unit create: {org!r} has a unit {name!r} already: {existing.unit_id}")
            return 1
    finally:
        await conn.close()
    if as_json:
        _print_json(_unit_json(unit))
    else:
        print(unit.unit_id)
        _note(f"unit create: {name!r} of {org!r} is {unit.unit_id}")
    return 0


async def _unit_id(settings: Settings, unit: str | None, org: str | None) -> str | None:
    """The id of the unit named on the command line (None: every unit)."""
    if unit is None:
        if org is not None:
            raise UnitError("--org picks among the units of one name: give --unit too")
        return None
    conn = await asyncpg.connect(settings.database_url)
    try:
        return (await resolve_unit(conn, unit, org=org)).unit_id
    finally:
        await conn.close()


async def _migrate(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    _note(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")


async def _topics_create(settings: Settings) -> None:
    created = await ensure_topics(
        settings.kafka_bootstrap_servers,
        settings.topics,
        settings.events_partitions,
        Replication(settings.replication_factor, settings.min_insync_replicas),
    )
    _note(f"topics created: {', '.join(created) or 'none (all exist)'}")


async def _replay(settings: Settings, command: str, unit_id: str | None, as_json: bool) -> int:
    run = rescore if command == "rescore" else replay
    try:
        summary = await run(settings, unit_id, progress=Report(command))
    except (ReplayError, KafkaError) as exc:
        # Before the switch, nothing changed; while publishing the replay records after it,
        # those not sent are sent by the next run, which finds the same differences.
        _note(f"leadvibe {command}: {exc}")
        return 1
    for line in summary.lines():
        _note(f"{command}: {line}")
    if as_json:
        _print_json(_summary_json(unit_id, summary))
    return 0


def _summary_json(unit_id: str | None, summary: ReplaySummary) -> dict[str, Any]:
    return {
        "unit_id": unit_id,
        "units": summary.units,
        "totals": summary.totals._asdict(),
        "written": {table: w._asdict() for table, w in summary.written.items()},
        "records_read": summary.records_read,
        "published": summary.published,
        "seconds": summary.seconds,
        "paused": summary.paused,
        "log_alone": summary.log_alone,
        "undecodable": summary.undecodable,
        "caught_up": {"leads": summary.caught_up[0], "events": summary.caught_up[1]},
    }


async def _alias_collisions(settings: Settings, args: argparse.Namespace) -> None:
    unit_id, as_json = await _unit_id(settings, args.unit, args.org), args.json
    conn = await asyncpg.connect(settings.database_url)
    try:
        found = []
        for each in [unit_id] if unit_id else await alias_collisions.units(conn):
            found.extend(await alias_collisions.find(conn, each))
    finally:
        await conn.close()
    if as_json:
        _print_json(
            [
                {
                    "unit_id": c.unit_id,
                    "kind": c.kind,
                    "value": c.value,
                    "split": c.split,
                    "stale": c.stale,
                    "lead_ids": c.lead_ids,
                    "stored": [{"value": s.value, "lead_id": s.lead_id} for s in c.stored],
                }
                for c in found
            ]
        )
    else:
        for collision in found:
            print("\n".join(collision.lines()))
    _note(f"aliases collisions: {len(found)} group(s) to look at")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadvibe", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def json_flag(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--json", action="store_true", help="print the result as JSON on standard output"
        )

    def unit_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--unit", metavar="UNIT", help="a unit's name or id (default: every unit)"
        )
        command.add_argument(
            "--org", metavar="ORG", help="the organisation, when several have a unit of that name"
        )

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="action", required=True)
    create = token_commands.add_parser(
        "create", help="create the organisation and unit if needed; print a new token"
    )
    create.add_argument("--org", required=True, help="organisation name")
    create.add_argument("--unit", required=True, help="organizational unit name (made active)")
    json_flag(create)

    unit = commands.add_parser("unit", help="organizational units")
    unit_commands = unit.add_subparsers(dest="action", required=True)
    listing = unit_commands.add_parser("list", help="every unit: organisation, name, id")
    listing.add_argument("--org", metavar="ORG", help="only this organisation's units")
    json_flag(listing)
    made = unit_commands.add_parser(
        "create", help="a new unit (and its organisation, if new); print its id"
    )
    made.add_argument("--org", required=True, help="organisation name")
    made.add_argument("--unit", required=True, help="the new unit's name")
    json_flag(made)

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
        unit_options(command)
        json_flag(command)

    aliases = commands.add_parser("aliases", help="the aliases the scorer stored")
    collisions = aliases.add_subparsers(dest="action", required=True).add_parser(
        "collisions",
        help="aliases stored under values today's normalisation maps to one value (split "
        "leads), or changes (stale)",
    )
    unit_options(collisions)
    json_flag(collisions)
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "token":
        asyncio.run(_token_create(settings, args.org, args.unit, args.json))
    elif args.command == "unit" and args.action == "list":
        asyncio.run(_unit_list(settings, args.org, args.json))
    elif args.command == "unit":
        return asyncio.run(_unit_create(settings, args.org, args.unit, args.json))
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "topics":
        asyncio.run(_topics_create(settings))
    elif args.command in ("replay", "rescore"):
        return asyncio.run(_replay_unit(settings, args))
    elif args.command == "aliases":
        asyncio.run(_alias_collisions(settings, args))
    return 0


async def _replay_unit(settings: Settings, args: argparse.Namespace) -> int:
    unit_id = await _unit_id(settings, args.unit, args.org)
    return await _replay(settings, args.command, unit_id, args.json)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"leadvibe: {exc}", file=sys.stderr)
        return 2
    configure_logging("leadvibe", settings.log_format, level="WARNING")
    try:
        return _run(settings, args)
    except UnitError as exc:
        _note(f"leadvibe {args.command}: {exc}")
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        _note(f"leadvibe: {type(exc).__name__}: {exc}")
        return 1
    except ReplicationError as exc:
        _note(f"leadvibe: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
