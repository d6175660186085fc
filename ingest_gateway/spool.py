"""The bytes of an uploaded file, held between reading the upload and publishing its events.

An import publishes its events only once the whole file has arrived and passed the
whole-file checks (a file found too large or not UTF-8 at its last byte publishes
nothing), yet memory must not grow with the file: the bytes wait here, in a temporary
file on disk (the page cache, for a file read back at once), and are read back a chunk
at a time while the rows are parsed and their events published.

(The spool held encoded events before, compressed with zlib: 2.5 times the file's bytes
to encode, compress, decompress and decode again. Keeping the file's own bytes costs a
write and a read.)
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import IO


class UploadSpool:
    """Bytes written in order, read back in order in chunks, from a temporary file."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            # Closed by close(): the file outlives this call.
            self._file = tempfile.TemporaryFile(prefix="leadvibe-import-")  # noqa: SIM115
        self._file.write(data)
        self.size += len(data)

    def chunks(self, size: int) -> Iterator[bytes]:
        """Everything written so far, from the start, in chunks of ``size`` bytes."""
        if self._file is None:
            return
        self._file.flush()
        self._file.seek(0)
        while chunk := self._file.read(size):
            yield chunk
        self._file.seek(0, 2)  # further writes append

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> UploadSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
