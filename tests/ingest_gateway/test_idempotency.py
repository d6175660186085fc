"""Ids from an Idempotency-Key: the same key from the same unit, the same ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest_gateway.idempotency import UUID5, import_event_ids, import_id_of, ingest_event_ids
from schemas.ids import derived_id, id_millis

CREATED = datetime(2026, 3, 1, 12, 0, 0, 123_456, tzinfo=UTC)


def test_a_key_gives_the_same_import_id_in_the_same_unit_only() -> None:
    assert import_id_of("ou_a", "key-1") == import_id_of("ou_a", "key-1")
    assert import_id_of("ou_a", "key-1") == "imp_" + derived_id("ou_a", "key-1")
    assert import_id_of("ou_b", "key-1") != import_id_of("ou_a", "key-1")


def test_without_a_key_import_ids_are_new_each_time() -> None:
    assert import_id_of("ou_a", None) != import_id_of("ou_a", None)
    assert import_id_of("ou_a", None).startswith("imp_")


def test_keyed_event_ids_are_derived_from_unit_key_creation_time_and_row() -> None:
    ids = import_event_ids("ou_a", "imp_x", "key-1", CREATED)
    assert ids(2) == import_event_ids("ou_a", "imp_y", "key-1", CREATED)(2)
    assert ids(2) != import_event_ids("ou_b", "imp_x", "key-1", CREATED)(2)
    assert ids(2) != import_event_ids("ou_a", "imp_x", "key-2", CREATED)(2)
    assert ids(2) != import_event_ids("ou_a", "imp_x", "key-1", CREATED + timedelta(seconds=1))(2)


def test_event_ids_sort_by_creation_time_then_row_and_carry_the_time() -> None:
    """What makes the events key append: an import's ids after every earlier import's, in
    row order."""
    earlier = import_event_ids("ou_a", "imp_x", "key-1", CREATED)
    later = import_event_ids("ou_a", "imp_y", None, CREATED + timedelta(milliseconds=1))
    ids = [earlier(row) for row in (2, 3, 10, 9_999, 1_000_000)] + [later(2), later(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("ev_") and len(i) == 29 for i in ids)
    assert id_millis(ids[0], "ev_") == int(CREATED.timestamp() * 1000)


def test_imports_recorded_before_ordered_ids_keep_their_uuid5_ids() -> None:
    """A keyed retry of an import recorded before migration 0008 publishes its first ids."""
    assert import_event_ids("ou_a", "imp_x", "key-1", CREATED, form=UUID5)(2) == derived_id(
        "ou_a", "key-1", "2"
    )
    assert import_event_ids("ou_a", "imp_x", None, CREATED, form=UUID5)(2) == derived_id(
        "ou_a", "imp_x", "row", "2"
    )


def test_keyless_event_ids_never_meet_keyed_ones() -> None:
    # Even a client whose key is another import's id does not get that import's event ids.
    keyless = import_event_ids("ou_a", "imp_x", None, CREATED)
    assert keyless(2) != import_event_ids("ou_a", "whatever", "imp_x", CREATED)(2)


def test_ingest_ids() -> None:
    assert ingest_event_ids("ou_a", "k", 3) == ingest_event_ids("ou_a", "k", 3)
    assert len(set(ingest_event_ids("ou_a", "k", 3))) == 3
    assert ingest_event_ids("ou_a", "k", 1)[0] != import_event_ids("ou_a", "imp", "k", CREATED)(0)
    assert len(set(ingest_event_ids("ou_a", None, 3))) == 3
