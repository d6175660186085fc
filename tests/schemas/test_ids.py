from __future__ import annotations

from schemas.ids import sortable_id


def test_sortable_ids_sort_by_time() -> None:
    earlier = sortable_id("ld_", millis=1_700_000_000_000)
    later = sortable_id("ld_", millis=1_700_000_000_001)
    assert earlier < later
    assert earlier.startswith("ld_")
    assert len(earlier) == 3 + 26


def test_sortable_id_is_reproducible_from_time_and_entropy() -> None:
    one = sortable_id("ld_", millis=1_700_000_000_000, entropy=b"0123456789")
    assert one == sortable_id("ld_", millis=1_700_000_000_000, entropy=b"0123456789")
    assert one != sortable_id("ld_", millis=1_700_000_000_000, entropy=b"0123456788")
    assert sortable_id("ld_") != sortable_id("ld_")
