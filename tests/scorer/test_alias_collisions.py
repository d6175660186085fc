"""The report of aliases stored under values today's normalisation changes."""

from __future__ import annotations

import asyncpg
import pytest

from scorer.alias_collisions import Collision, Stored, collisions, find, units, visible


def test_values_that_now_normalise_alike_make_one_group_with_their_leads() -> None:
    stale = [
        Stored("email", "ja\u200bne@acme.com", "ld_2"),
        Stored("email", "\uff4aane@acme.com", "ld_3"),
    ]
    current = [Stored("email", "jane@acme.com", "ld_1")]
    [group] = collisions("ou_1", stale, current)
    assert (group.kind, group.value) == ("email", "jane@acme.com")
    assert group.lead_ids == ("ld_1", "ld_2", "ld_3")
    assert (group.split, group.stale) == (True, False)
    assert group.lines() == [
        "ou_1 email 'jane@acme.com': split; 3 stored value(s) of 3 lead(s)",
        "  'jane@acme.com'  ld_1",
        "  'ja\\u200bne@acme.com'  ld_2",
        "  '\uff4aane@acme.com'  ld_3",
    ]


def test_a_value_no_longer_in_todays_form_is_stale_even_alone() -> None:
    [group] = collisions("ou_1", [Stored("email", "e\u0301mile@x.fr", "ld_1")], [])
    assert (group.value, group.split, group.stale) == ("\u00e9mile@x.fr", False, True)
    assert group.lines()[0] == "ou_1 email '\u00e9mile@x.fr': stale; 1 stored value(s) of 1 lead(s)"
    assert group.lines()[1] == "  'e\\u0301mile@x.fr'  ld_1"


def test_a_value_that_names_no_one_now_is_reported_as_such() -> None:
    [group] = collisions("ou_1", [Stored("phone", "+", "ld_1")], [])
    assert group.value == ""
    assert group.lines()[0].startswith("ou_1 phone nothing (names no one): stale;")


def test_current_rows_outside_the_stale_groups_are_not_reported() -> None:
    assert collisions("ou_1", [], [Stored("email", "a@b.c", "ld_1")]) == []


def test_two_stale_values_of_one_lead_are_stale_not_split() -> None:
    stale = [Stored("phone", "+1 ٣555", "ld_1"), Stored("phone", "+1²555", "ld_1")]
    [group] = collisions("ou_1", stale, [])
    assert isinstance(group, Collision)
    assert (group.value, group.split, group.stale) == ("+1555", False, True)


def test_visible_escapes_what_a_terminal_would_not_show() -> None:
    assert visible("a\u00adb\u200b c\u0301ß") == "'a\\u00adb\\u200b c\\u0301ß'"


@pytest.mark.integration
async def test_find_reads_a_units_aliases_and_no_other_units(pool: asyncpg.Pool) -> None:
    rows = [
        ("ou_1", "email", "jane@acme.com", "ld_1"),
        ("ou_1", "email", "ja\u200bne@acme.com", "ld_2"),
        ("ou_1", "phone", "+", "ld_3"),
        ("ou_1", "cookie", "c1", "ld_1"),
        ("ou_1", "email", "bob@acme.com", "ld_4"),
        ("ou_2", "email", "ja\u00adne@acme.com", "ld_9"),
        ("ou_2", "email", "jane@acme.com", "ld_8"),
    ]
    await pool.executemany(
        """INSERT INTO aliases (unit_id, kind, value, lead_id, event_id)
           VALUES ($1, $2, $3, $4, 'e')""",
        rows,
    )
    async with pool.acquire() as conn:
        assert sorted(await units(conn)) == ["ou_1", "ou_2"]
        found = await find(conn, "ou_1")
    assert [(c.kind, c.value, c.lead_ids, c.split, c.stale) for c in found] == [
        ("email", "jane@acme.com", ("ld_1", "ld_2"), True, False),
        ("phone", "", ("ld_3",), False, True),
    ]
