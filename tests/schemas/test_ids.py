"""derived_ids, the fast path of derived_id for the rows of one upload, gives the same ids."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.ids import derived_id, derived_ids

parts = st.lists(st.text(max_size=20), max_size=3)


@given(parts, st.text(max_size=20))
def test_derived_ids_equal_derived_id(shared: list[str], last: str) -> None:
    assert derived_ids(*shared)(last) == derived_id(*shared, last)


def test_every_row_of_an_upload_gets_its_own_id() -> None:
    derive = derived_ids("ou_1", "key-1")
    ids = {derive(str(row)) for row in range(2, 10_002)}
    assert len(ids) == 10_000
    assert derive("2") == derived_id("ou_1", "key-1", "2")
