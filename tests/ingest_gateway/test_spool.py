"""The spool gives back every record, in order, in batches, from memory or from disk."""

from __future__ import annotations

from ingest_gateway.spool import EventSpool


def test_records_come_back_in_order_in_batches() -> None:
    with EventSpool(batch_size=3) as spool:
        for i in range(8):
            spool.add(f"k{i}".encode(), f"v{i}".encode())
        assert len(spool) == 8
        batches = list(spool.batches())
    assert [len(b) for b in batches] == [3, 3, 2]
    assert [r for b in batches for r in b] == [
        (f"k{i}".encode(), f"v{i}".encode()) for i in range(8)
    ]


def test_a_small_spool_never_touches_the_disk() -> None:
    with EventSpool(batch_size=10) as spool:
        spool.add(b"k", b"v")
        assert spool._file is None
        assert list(spool.batches()) == [[(b"k", b"v")]]


def test_batches_can_be_read_twice_and_close_removes_the_file() -> None:
    spool = EventSpool(batch_size=2)
    for i in range(5):
        spool.add(b"k", bytes([i]))
    first = list(spool.batches())
    assert list(spool.batches()) == first
    file = spool._file
    spool.close()
    assert file is not None
    assert file.closed
    assert list(spool.batches()) == []


def test_frames_on_disk_are_compressed() -> None:
    """Records of one import repeat most of their bytes: on disk they take a tenth."""
    value = b'{"version":1,"unit_id":"ou_1","lead_id":"a","event_type":"b","source":"import"}'
    with EventSpool(batch_size=1000) as spool:
        for i in range(5000):
            spool.add(b"ou_1:a", value + str(i).encode())
        raw = 5000 * (len(b"ou_1:a") + len(value) + 4)
        assert 0 < spool.disk_bytes < raw / 10
        assert [r for b in spool.batches() for r in b][4999] == (b"ou_1:a", value + b"4999")
