from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from schemas import DecodeError, LeadEvent, decode, encode


def _event() -> LeadEvent:
    return LeadEvent(
        event_id="e1",
        unit_id="ou_1",
        lead_id="ld_1",
        event_type="page_view",
        timestamp=datetime(2025, 6, 15, 10, 30, tzinfo=UTC),
        source="api",
    )


def test_round_trip() -> None:
    assert decode(encode(_event()), LeadEvent) == _event()


def test_unknown_fields_from_a_newer_producer_are_ignored() -> None:
    raw = msgspec.json.decode(encode(_event()))
    raw["added_in_v2"] = {"anything": [1, 2]}
    assert decode(msgspec.json.encode(raw), LeadEvent) == _event()


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"{}", b'{"event_id": 1}', None],
    ids=["empty", "garbage", "missing-fields", "wrong-type", "none"],
)
def test_bad_records_raise_decode_error(data: bytes | None) -> None:
    with pytest.raises(DecodeError):
        decode(data, LeadEvent)
