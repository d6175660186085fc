"""Upload slots: a few per unit, a bound in all, given back however the upload ends."""

from __future__ import annotations

import pytest

from ingest_gateway.errors import TooManyRequests
from ingest_gateway.upload_slots import UploadSlots


def test_a_unit_has_its_slots_and_no_more() -> None:
    slots = UploadSlots(per_unit=2, in_all=8)
    with slots.take("ou_1"), slots.take("ou_1"):
        with pytest.raises(TooManyRequests) as caught, slots.take("ou_1"):
            pass
        assert caught.value.code == "too_many_uploads"
        assert caught.value.retry_after == 5
        with slots.take("ou_2"):  # another unit is not held up
            assert slots.in_use() == 3
    assert slots.in_use() == slots.in_use("ou_1") == 0


def test_the_slots_in_all_bound_every_unit() -> None:
    slots = UploadSlots(per_unit=2, in_all=2)
    with (
        slots.take("ou_1"),
        slots.take("ou_2"),
        pytest.raises(TooManyRequests, match="working on 2 imports"),
        slots.take("ou_3"),
    ):
        pass


def test_a_slot_is_given_back_when_the_upload_fails() -> None:
    slots = UploadSlots(per_unit=1, in_all=1)
    with pytest.raises(ValueError, match="boom"), slots.take("ou_1"):
        raise ValueError("boom")
    with slots.take("ou_1"):
        assert slots.in_use("ou_1") == 1
