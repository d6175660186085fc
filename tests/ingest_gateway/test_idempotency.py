"""Ids from an Idempotency-Key: the same key from the same unit, the same ids."""

from __future__ import annotations

from ingest_gateway.idempotency import import_event_ids, import_id_of, ingest_event_ids
from schemas.ids import derived_id


def test_a_key_gives_the_same_import_id_in_the_same_unit_only() -> None:
    assert import_id_of("ou_a", "key-1") == import_id_of("ou_a", "key-1")
    assert import_id_of("ou_a", "key-1") == "imp_" + derived_id("ou_a", "key-1")
    assert import_id_of("ou_b", "key-1") != import_id_of("ou_a", "key-1")


def test_without_a_key_import_ids_are_new_each_time() -> None:
    assert import_id_of("ou_a", None) != import_id_of("ou_a", None)
    assert import_id_of("ou_a", None).startswith("imp_")


def test_keyed_event_ids_are_derived_from_unit_key_and_row() -> None:
    ids = import_event_ids("ou_a", "imp_x", "key-1")
    assert ids(2) == derived_id("ou_a", "key-1", "2")
    assert import_event_ids("ou_a", "imp_y", "key-1")(2) == ids(2)


def test_keyless_event_ids_never_meet_keyed_ones() -> None:
    # Even a client whose key is another import's id does not get that import's event ids.
    keyless = import_event_ids("ou_a", "imp_x", None)
    assert keyless(2) == derived_id("ou_a", "imp_x", "row", "2")
    assert keyless(2) != import_event_ids("ou_a", "whatever", "imp_x")(2)


def test_ingest_ids() -> None:
    assert ingest_event_ids("ou_a", "k", 3) == ingest_event_ids("ou_a", "k", 3)
    assert len(set(ingest_event_ids("ou_a", "k", 3))) == 3
    assert ingest_event_ids("ou_a", "k", 1)[0] != import_event_ids("ou_a", "imp", "k")(0)
    assert len(set(ingest_event_ids("ou_a", None, 3))) == 3
