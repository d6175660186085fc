"""The spool gives back every byte written, in order, in chunks, from a temporary file."""

from __future__ import annotations

from ingest_gateway.spool import UploadSpool


def test_bytes_come_back_in_order_in_chunks_of_the_size_asked() -> None:
    with UploadSpool() as spool:
        for i in range(5):
            spool.write(bytes([i]) * 3)
        assert spool.size == 15
        assert list(spool.chunks(4)) == [
            b"\x00\x00\x00\x01",
            b"\x01\x01\x02\x02",
            b"\x02\x03\x03\x03",
            b"\x04\x04\x04",
        ]


def test_an_empty_spool_has_no_chunks_and_no_file() -> None:
    with UploadSpool() as spool:
        assert list(spool.chunks(10)) == []
        assert spool._file is None


def test_chunks_can_be_read_twice_writes_append_and_close_removes_the_file() -> None:
    spool = UploadSpool()
    spool.write(b"abc")
    assert b"".join(spool.chunks(2)) == b"abc"
    spool.write(b"de")
    assert b"".join(spool.chunks(2)) == b"abcde"
    file = spool._file
    spool.close()
    assert file is not None
    assert file.closed
    assert spool._file is None
