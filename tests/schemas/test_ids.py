"""Ids: derived_ids gives what derived_id gives; ordered_ids sort by time, then row."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.ids import derived_id, derived_ids, id_millis, ordered_ids, sortable_id

parts = st.lists(st.text(max_size=20), max_size=3)


@given(parts, st.text(max_size=20))
def test_derived_ids_equal_derived_id(shared: list[str], last: str) -> None:
    assert derived_ids(*shared)(last) == derived_id(*shared, last)


def test_every_row_of_an_upload_gets_its_own_id() -> None:
    derive = derived_ids("ou_1", "key-1")
    ids = {derive(str(row)) for row in range(2, 10_002)}
    assert len(ids) == 10_000
    assert derive("2") == derived_id("ou_1", "key-1", "2")


@given(st.integers(0, 2**48 - 1), st.integers(0, 2**35 - 2), parts)
def test_ordered_ids_sort_by_time_then_row(millis: int, row: int, shared: list[str]) -> None:
    ids = ordered_ids("ev_", millis, *shared)
    assert ids(row) < ids(row + 1)
    assert id_millis(ids(row), "ev_") == millis
    if millis < 2**48 - 1:
        assert ids(row + 1) < ordered_ids("ev_", millis + 1, *shared)(row)
    assert ids(row) == ordered_ids("ev_", millis, *shared)(row)  # the same inputs, the same id


def test_ordered_ids_have_the_form_of_sortable_ids() -> None:
    made = ordered_ids("ev_", 1_767_225_600_123, "ou_1", "key-1")(2)
    assert len(made) == len(sortable_id("ev_"))
    assert made[:13] == sortable_id("ev_", millis=1_767_225_600_123)[:13]
    assert ordered_ids("ev_", 1_767_225_600_123, "ou_1", "key-2")(2) != made
