"""Reading a multipart/form-data upload as it arrives (python-multipart's streaming parser).

The file's bytes go to the sink as they arrive, in batches of at least :data:`FILE_BATCH`
bytes (so that a sink that hands each batch to a worker thread pays for the hand-over a few
dozen times per file, however small the network's chunks), never gathered whole; the 413
comes as soon as the file passes its limit, before the rest of the body is read. (Starlette's
``request.form()`` would first spool the whole file.) The form's other fields are small, and
reach the sink whole. The body is read within the deadlines of :func:`bodies.body_chunks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ingest_gateway.bodies import body_chunks
from ingest_gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_LIMIT: Final = 10 * 1024 * 1024
"""Bytes of the uploaded file (10 MB)."""
FORM_LIMIT: Final = 64 * 1024
"""Bytes the rest of the form may add: part headers, boundaries, other fields."""
FIELD_LIMIT: Final = 1024
"""Bytes of one form field other than the file."""
MEGABYTES: Final = FILE_LIMIT // (1024 * 1024)
FILE_BATCH: Final = 256 * 1024
"""Bytes of the file gathered before they go to the sink (the last batch may be smaller)."""


class UploadSink(Protocol):
    async def file_data(self, data: bytes) -> None:
        """The next bytes of the file."""

    def field(self, name: str, value: str) -> None:
        """A form field other than the file, whole."""


class _Form:
    """python-multipart's callbacks: which part is which, and the bytes of each."""

    def __init__(self, sink: UploadSink, file_field: str, file_limit: int) -> None:
        self.sink = sink
        self.file_field = file_field
        self.file_limit = file_limit
        self.file_parts = 0
        self.file_size = 0
        self.form_size = 0
        self.ended = False
        self.file_chunks: list[bytes] = []  # file bytes not given to the sink yet
        self.file_pending = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._in_file = False
        self._field_name = ""
        self._field_value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == self.file_field:
            self.file_parts += 1
            if self.file_parts > 1:
                raise BadRequest(
                    f"The form has more than one {self.file_field!r} field; send one file.",
                    code="invalid_multipart",
                )
            self._in_file = True
        else:
            self._field_name = name
            self._field_value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.file_size += end - start
            if self.file_size > self.file_limit:
                raise PayloadTooLarge(
                    f"The file is over {MEGABYTES} MB ({self.file_limit} bytes); split it into "
                    "smaller files and import each.",
                    code="file_too_large",
                )
            self.file_chunks.append(data[start:end])
            self.file_pending += end - start
            return
        self.form_size += end - start
        self._field_value += data[start:end]
        if len(self._field_value) > FIELD_LIMIT:
            raise PayloadTooLarge(
                f"The form field {self._field_name!r} is over {FIELD_LIMIT} bytes.",
                code="field_too_large",
            )
        if self.form_size > FORM_LIMIT:
            raise PayloadTooLarge(
                f"The form's fields other than {self.file_field!r} are over {FORM_LIMIT} bytes.",
                code="payload_too_large",
            )

    def on_part_end(self) -> None:
        if not self._in_file:
            self.sink.field(self._field_name, self._field_value.decode("utf-8", "replace"))
        self._in_file = False

    def on_end(self) -> None:
        self.ended = True

    def take_file_data(self) -> bytes:
        data = b"".join(self.file_chunks)
        self.file_chunks.clear()
        self.file_pending = 0
        return data


def _boundary(request: Request) -> bytes:
    content_type = request.headers.get("content-type")
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        got = f"got {content_type!r}" if content_type else "it has no Content-Type"
        raise UnsupportedMediaType(
            "Send the CSV as multipart/form-data, in a field named 'file' "
            f"(curl -F 'file=@events.csv'); {got}."
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest(
            "The multipart/form-data Content-Type has no boundary.", code="invalid_multipart"
        )
    return boundary


async def read_upload(
    request: Request, sink: UploadSink, *, file_field: str = "file", file_limit: int = FILE_LIMIT
) -> int:
    """Stream the form to ``sink``; return the size of the file.

    415 if the body is not multipart/form-data; 413 as soon as the file passes
    ``file_limit`` bytes (at once when Content-Length says the body is that large); 400 if
    the body is not well-formed multipart, ends before its closing boundary, or has no file;
    408 if the client sends it too slowly. Errors the sink raises go through unchanged.
    """
    boundary = _boundary(request)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > file_limit + FORM_LIMIT:
        raise PayloadTooLarge(
            f"The upload is {int(length)} bytes; the file may be at most {MEGABYTES} MB "
            f"({file_limit} bytes). Split it into smaller files and import each.",
            code="file_too_large",
        )
    form = _Form(sink, file_field, file_limit)
    try:
        parser = MultipartParser(boundary, form.callbacks())
    except ValueError as exc:
        raise BadRequest(
            f"The multipart boundary is not usable: {exc}.", code="invalid_multipart"
        ) from None
    async for chunk in body_chunks(request):
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(
                f"The body is not valid multipart/form-data: {exc}.", code="invalid_multipart"
            ) from None
        if form.file_pending >= FILE_BATCH:
            await sink.file_data(form.take_file_data())
    if form.file_pending:
        await sink.file_data(form.take_file_data())
    parser.finalize()
    if not form.ended:
        raise BadRequest(
            "The upload ended before the multipart body did (no closing boundary); send it again.",
            code="invalid_multipart",
        )
    if not form.file_parts:
        raise BadRequest(
            f"The form has no {file_field!r} field: send the CSV as -F '{file_field}=@events.csv'.",
            code="missing_file",
        )
    return form.file_size
