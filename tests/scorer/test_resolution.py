"""Identity resolution as a pure function (DESIGN.md decision 6)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count

from schemas import Alias, LeadEvent
from scorer.resolution import AliasConflict, Identity, Resolved, alias_keys, resolve

UNIT = "ou_1"


def _identity(lead_id: str | None = None, **aliases: str) -> Identity:
    event = LeadEvent(
        event_id="e",
        unit_id=UNIT,
        lead_id=lead_id,
        aliases=tuple(Alias(kind, value) for kind, value in aliases.items()),  # type: ignore[arg-type]
        event_type="page_view",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        source="api",
    )
    return Identity.of(event)


def _minter() -> Iterator[str]:
    return (f"ld_new{n}" for n in count(1))


def _resolve(
    identities: list[Identity], owners: dict[tuple[str, str, str], str] | None = None
) -> list[Resolved | None]:
    ids = _minter()
    return resolve(identities, {} if owners is None else owners, mint=lambda position: next(ids))


def test_identity_normalises_deduplicates_and_orders_aliases_by_priority() -> None:
    identity = _identity(
        cookie=" c1 ", email="  Jane@ACME.com ", phone="+1 (415) 555-0100", external_id="X-1"
    )
    assert identity.aliases == (
        Alias("external_id", "X-1"),
        Alias("email", "jane@acme.com"),
        Alias("phone", "+14155550100"),
        Alias("cookie", "c1"),
    )
    assert _identity(phone="n/a").aliases == ()  # nothing left after normalisation
    assert _identity(lead_id="  ").lead_id is None


def test_lead_id_row_goes_to_that_lead_and_attaches_its_free_aliases() -> None:
    [resolved] = _resolve([_identity("ld_abc123", email="Jane@acme.com")])
    assert resolved == Resolved("ld_abc123", False, (Alias("email", "jane@acme.com"),))


def test_alias_only_rows_create_a_lead_then_reuse_it() -> None:
    first, second, third = _resolve(
        [
            _identity(email="jane@acme.com", cookie="c1"),
            _identity(email="JANE@acme.com "),
            _identity(cookie="c1", phone="555"),
        ]
    )
    assert first == Resolved(
        "ld_new1", True, (Alias("email", "jane@acme.com"), Alias("cookie", "c1"))
    )
    assert second == Resolved("ld_new1", False)
    assert third == Resolved("ld_new1", False, (Alias("phone", "555"),))


def test_known_alias_wins_over_a_new_one_of_higher_priority() -> None:
    owners = {(UNIT, "cookie", "c1"): "ld_old"}
    [resolved] = _resolve([_identity(external_id="X", cookie="c1")], owners)
    assert resolved == Resolved("ld_old", False, (Alias("external_id", "X"),))


def test_highest_priority_owned_alias_decides_and_the_other_owner_keeps_its_alias() -> None:
    owners = {(UNIT, "email", "a@b.c"): "ld_email", (UNIT, "cookie", "c1"): "ld_cookie"}
    [resolved] = _resolve([_identity(cookie="c1", email="a@b.c")], owners)
    assert resolved == Resolved(
        "ld_email", False, (), (AliasConflict(Alias("cookie", "c1"), "ld_cookie"),)
    )


def test_lead_id_row_naming_another_leads_alias_records_a_conflict() -> None:
    owners = {(UNIT, "email", "a@b.c"): "ld_other"}
    [resolved] = _resolve([_identity("ld_mine", email="a@b.c", cookie="c9")], owners)
    assert resolved == Resolved(
        "ld_mine",
        False,
        (Alias("cookie", "c9"),),
        (AliasConflict(Alias("email", "a@b.c"), "ld_other"),),
    )


def test_decisions_of_earlier_events_count_for_later_ones() -> None:
    first, second = _resolve([_identity("ld_a", email="a@b.c"), _identity("ld_b", email="a@b.c")])
    assert first == Resolved("ld_a", False, (Alias("email", "a@b.c"),))
    assert second == Resolved("ld_b", False, (), (AliasConflict(Alias("email", "a@b.c"), "ld_a"),))


def test_aliases_are_per_unit() -> None:
    other_unit = Identity("ou_2", None, (Alias("email", "a@b.c"),))
    owners = {(UNIT, "email", "a@b.c"): "ld_a"}
    [resolved] = _resolve([other_unit], owners)
    assert resolved is not None
    assert resolved.lead_id == "ld_new1"
    assert resolved.new_lead


def test_no_lead_id_and_no_alias_is_unresolved() -> None:
    assert _resolve([_identity(), _identity(phone="---")]) == [None, None]


def test_owners_receive_the_aliases_attached_and_keys_cover_every_alias() -> None:
    owners: dict[tuple[str, str, str], str] = {}
    identities = [_identity(email="a@b.c"), _identity("ld_x", cookie="c")]
    [first, _] = _resolve(identities, owners)
    assert first is not None
    assert owners == {(UNIT, "email", "a@b.c"): first.lead_id, (UNIT, "cookie", "c"): "ld_x"}
    assert alias_keys(identities) == {(UNIT, "email", "a@b.c"), (UNIT, "cookie", "c")}


def test_default_mint_makes_sortable_lead_ids() -> None:
    [resolved] = resolve([_identity(email="a@b.c")], {})
    assert resolved is not None
    assert resolved.lead_id.startswith("ld_")
    assert len(resolved.lead_id) == 29
