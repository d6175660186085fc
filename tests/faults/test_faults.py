"""The fault suite: an import of 100,000 rows through the real services, and faults one
after another while it is scored.

Postgres, Kafka, the gateway, two scorers and the trigger service run as processes of
their own (on ports and in a folder of the suite's own). While the import is scored, at
checkpoints of its progress:

1. Postgres's postmaster is killed (kill -9) and started again 2 s later (if the upload
   is still publishing then, its 503 is retried with the same Idempotency-Key);
2. the broker is killed (kill -9) and started again;
3. a scorer and the trigger service are killed (SIGKILL) and started again;
4. a poison record of each kind is put on the events topic: bytes that do not decode, an
   event of about 1 MB with no usable identity, an event that overflows a lead's score;
5. a system fault: the scorers' INSERT privilege on ``events`` is revoked until a scorer
   reports (GET /health) that it stopped; nothing may be dead-lettered meanwhile; then
   the privilege is granted back.

Throughout, no service may exit other than those killed on purpose. At the end: the
import is fully applied (``GET /imports/{id}``: applied == imported), every lead's score
is what the rows and rules give (computed here), the trigger fired once for each lead that
reached its threshold and for no other, every firing was delivered, and the dead letters
are exactly the three poison records.

Every problem is noted and the scenario goes on (a service that died is started again),
so that one run lists all of them; the test fails at the end with the list.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from ingest_gateway.idempotency import import_id_of
from schemas.topics import partition_key
from tests.faults import workload
from tests.faults.pipeline import SCORER_ROLE, TOPICS, World, open_world
from tests.faults.servers import local_servers, unavailable
from tests.trigger_service.receiver import running_receiver
from tests.waiting import wait_for

WHY_NOT = unavailable()
pytestmark = [
    pytest.mark.faults,
    pytest.mark.xdist_group("faults"),  # `make test` runs two workers: this suite on one
    pytest.mark.skipif(WHY_NOT is not None, reason=f"fault suite: {WHY_NOT}"),
]

POSTGRES_OUTAGE = 2.0
"""Seconds Postgres stays down: the length of the fault, not a wait for a condition."""
SYSTEM_FAULT_TIMEOUT = 20.0


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[World, list[workload.Row]]]:
    rows = workload.rows()
    threshold = workload.threshold(workload.expected_scores(rows))
    started = time.monotonic()
    async with local_servers() as servers, running_receiver() as receiver:
        print(f"\n[set-up] Postgres and Kafka up in {time.monotonic() - started:.1f} s")
        async with open_world(servers, receiver, tmp_path / "logs", threshold) as world:
            print(f"[set-up] the services up in {time.monotonic() - started:.1f} s")
            yield world, rows


class Timeline:
    """Progress lines (``pytest -s`` shows them): seconds since the start, events applied."""

    def __init__(self, world: World, import_id: str) -> None:
        self.world = world
        self.import_id = import_id
        self.started = time.monotonic()

    async def __call__(self, message: str) -> None:
        applied = await self.world.applied(self.import_id)
        print(
            f"[{time.monotonic() - self.started:5.1f} s, {applied:>7,} applied] {message}",
            flush=True,
        )


async def test_faults_during_an_import_lose_nothing_double_nothing_and_stop_no_service(
    world: tuple[World, list[workload.Row]],
) -> None:
    w, rows = world
    key = str(uuid.uuid4())
    import_id = import_id_of(w.unit_id, key)
    say = Timeline(w, import_id)
    # Checkpoints of progress at which the faults are injected: early enough that more
    # than half of the import is still to be scored when the last fault comes.
    percent = len(rows) // 100

    upload = asyncio.create_task(w.upload(workload.csv_file(rows), key))

    # 1. Postgres: kill -9, 2 s down, started again.
    await w.until_applied(import_id, 5 * percent, "before the Postgres kill")
    publishing = not upload.done()
    await w.servers.kill_postgres()
    await say(f"killed Postgres (the upload {'still' if publishing else 'no longer'} running)")
    await asyncio.sleep(POSTGRES_OUTAGE)
    status, health = await w.fleet["gateway"].health(w.client)
    w.expect(status == 503, f"gateway /health during the Postgres outage: {status} {health}")
    await w.servers.start_postgres()
    await w.fleet.watch("the Postgres outage")
    await say("Postgres started again")
    accepted = await upload
    w.expect(accepted["imported"] == len(rows), f"the 202 of the upload: {accepted}")
    w.expect(accepted["import_id"] == import_id, f"the import id is {accepted['import_id']}")
    await w.until_applied(import_id, 20 * percent, "after the Postgres restart")
    await w.no_stray_dead_letters("after the Postgres restart")

    # 2. The broker: kill -9, started again.
    await w.servers.kill_kafka()
    await say("killed the broker")
    await w.servers.start_kafka()
    await w.fleet.watch("the broker outage")
    await say("the broker started again")
    await w.until_applied(import_id, 35 * percent, "after the broker restart")
    await w.no_stray_dead_letters("after the broker restart")

    # 3. A scorer and the trigger service: SIGKILL, started again.
    for name in ("scorer-1", "triggers"):
        await w.fleet[name].kill()
        await w.fleet[name].start()
    await say("killed and restarted scorer-1 and the trigger service")
    await w.until_applied(import_id, 45 * percent, "after killing a scorer and the triggers")
    await w.no_stray_dead_letters("after killing a scorer and the triggers")

    # 4. Poison, one record of each kind.
    overflow_key = partition_key(w.unit_id)  # the gateway's key: the unit's partition
    poison = await w.publish_poison(
        [
            (b"poison", workload.UNDECODABLE),
            (b"poison-huge", workload.huge_event(w.unit_id)),
            (overflow_key, workload.overflowing_event(w.unit_id)),
        ]
    )
    await say(f"poison records at (partition, offset) {sorted(poison)}")

    # 5. A system fault: the scorers may no longer write events, then may again.
    await w.database(lambda c: c.execute(f"REVOKE INSERT ON events FROM {SCORER_ROLE}"))
    await say("revoked INSERT on events from the scorers")
    try:
        stopped = await wait_for(
            w.stopped_scorers, timeout=SYSTEM_FAULT_TIMEOUT, interval=0.1,
            what="a scorer to report on /health that it stopped",
        )  # fmt: skip
        await say(f"{', '.join(stopped)} reported stopped")
    except AssertionError as exc:
        w.problems.note(f"the system fault: {exc}")
    await w.no_stray_dead_letters("during the system fault", poison)
    await w.fleet.watch("the system fault")
    await w.database(lambda c: c.execute(f"GRANT INSERT ON events TO {SCORER_ROLE}"))
    await say("granted INSERT on events again")

    # The end: all applied, exact, no doubled firing, the dead letters are the poison.
    await w.until_applied(import_id, len(rows), "after the repair")
    status_body = await w.import_status(import_id)
    w.expect(
        status_body["applied"] == status_body["imported"] == len(rows)
        and status_body["status"] == "completed",
        f"GET /imports/{{id}} at the end: {status_body}",
    )
    await say("the import is applied")
    await check_scores(w, rows)
    await check_firings(w, rows)
    await check_dead_letters(w, poison)
    await w.fleet.watch("the end")
    await say("done")
    assert not w.problems, "\n\n".join(w.problems)


async def check_scores(w: World, rows: list[workload.Row]) -> None:
    expected = {**workload.expected_scores(rows), workload.OVERFLOW_LEAD: workload.OVERFLOW_SCORE}
    scores = await w.database(
        lambda c: c.fetch("SELECT lead_id, score FROM leads WHERE unit_id = $1", w.unit_id)
    )
    actual = {r["lead_id"]: r["score"] for r in scores}
    wrong = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    extra = set(actual) - set(expected)
    w.expect(
        not wrong and not extra,
        f"scores: {len(wrong)} lead(s) not as computed from the rows and rules, such as "
        f"{dict(list(wrong.items())[:5])} (actual, expected); {len(extra)} unexpected lead(s)",
    )
    events = await w.database(
        lambda c: c.fetchval("SELECT count(*) FROM events WHERE unit_id = $1", w.unit_id)
    )
    w.expect(events == len(rows), f"events applied: {events}, not {len(rows)}")


async def check_firings(w: World, rows: list[workload.Row]) -> None:
    crossing = {
        lead for lead, score in workload.expected_scores(rows).items() if score >= w.threshold
    }
    assert len(crossing) > 100, "the scenario should make many leads fire"

    async def firings(c: asyncpg.Connection) -> list[asyncpg.Record]:
        return await c.fetch(
            """SELECT firing_id, lead_id, delivery_status FROM trigger_firings
               WHERE trigger_id = $1""",
            w.trigger_id,
        )

    async def all_delivered() -> list[asyncpg.Record]:
        await w.fleet.watch("webhook delivery")
        found: list[asyncpg.Record] = await w.database(firings)
        return found

    try:
        found = await wait_for(
            all_delivered,
            until=lambda f: len(f) >= len(crossing)
            and all(r["delivery_status"] == "delivered" for r in f),
            timeout=60, interval=0.2, what="every firing delivered",
        )  # fmt: skip
    except AssertionError as exc:
        w.problems.note(str(exc)[:500])
        found = await w.database(firings)
    leads = [r["lead_id"] for r in found]
    w.expect(len(leads) == len(set(leads)), f"firings: {len(leads) - len(set(leads))} doubled")
    w.expect(
        set(leads) == crossing,
        f"firings: {len(set(leads) - crossing)} lead(s) fired that should not have, "
        f"{len(crossing - set(leads))} that should have did not",
    )
    received = w.receiver.firing_ids("/hook")
    w.expect(
        received == {r["firing_id"] for r in found},
        f"webhooks: {len(received)} firings received, {len(found)} in the table",
    )


async def check_dead_letters(w: World, poison: set[tuple[int, int]]) -> None:
    async def letters() -> list[tuple[int, int]]:
        return sorted((d.partition, d.offset) for d in await w.dead_letters())

    try:
        found = await wait_for(
            letters, until=lambda f: len(f) >= len(poison), timeout=30, interval=0.2,
            what="the poison records dead-lettered",
        )  # fmt: skip
    except AssertionError as exc:
        w.problems.note(str(exc)[:500])
        found = await letters()
    w.expect(
        found == sorted(poison),
        f"dead letters at (partition, offset) {found}, not the poison records' {sorted(poison)}",
    )
    for letter in await w.dead_letters():
        w.expect(letter.topic == TOPICS.events, f"a dead letter from {letter.topic}")
