"""POST /import and GET /imports/{import_id}: the seed page's Import Events API.

An upload is read in two steps:

1. As it arrives (``uploads``), the file's bytes pass the checks that can refuse a file
   anywhere in it (``csv_rows.FileChecks``: UTF-8, NUL bytes, line length, the row limit;
   C passes over the bytes) and wait in a spool on disk (``spool``). Nothing is parsed
   or published before the whole body has arrived and passed them: a file refused at
   its last byte publishes nothing.
2. Then the file is parsed a chunk at a time in a worker thread (``csv_rows.ImportRows``:
   one event or row error per row) while the events of the chunk before are sent
   (``publishing.publish_stream``): parsing overlaps publishing. The header, the only
   thing left that can refuse the file, comes before any event. The import is recorded
   as publishing before its first event is sent; 202 comes after Kafka acknowledged the
   last one, and the import's counts are recorded with it.

The event loop goes on answering other requests meanwhile (the parser lets it run between
lines). An import holds one of the gateway's upload slots (``upload_slots``) from before
its file is read until it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Final

from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route

from ingest_gateway import import_store
from ingest_gateway.auth import require_principal
from ingest_gateway.bodies import path_text
from ingest_gateway.csv_rows import FileChecks, FileRejected, ImportRows, RowError, TooManyRows
from ingest_gateway.errors import BadRequest, NotFound, PayloadTooLarge, ServiceUnavailable
from ingest_gateway.events import shown
from ingest_gateway.idempotency import ORDERED, idempotency_key, import_event_ids, import_id_of
from ingest_gateway.publishing import (
    ReadyBatch,
    RecordBatches,
    ensure_reachable,
    partitions_of,
    publish_stream,
)
from ingest_gateway.responses import JSON
from ingest_gateway.spool import UploadSpool
from ingest_gateway.state import GatewayState, state_of
from ingest_gateway.uploads import read_upload
from schemas import LeadEvent, encode
from schemas.topics import partition_key

log = logging.getLogger(__name__)

ERROR_ROWS_SHOWN: Final = 100
"""Error rows in the 202 answer; GET /imports/{id} has up to import_store.ERROR_ROWS_KEPT."""

IGNORED_COLUMNS_SHOWN: Final = 100
"""Names of ignored columns an answer lists; ``ignored_columns_truncated`` says if more."""
IGNORED_NAME_SHOWN: Final = 100
"""Characters of an ignored column's name an answer shows; a longer one ends in "…"."""

_FLAGS: Final = {"true": True, "1": True, "false": False, "0": False}


class SkipTriggers:
    """``skip_triggers``, from the query and from the form: every value given must agree."""

    def __init__(self) -> None:
        self.given: list[tuple[str, bool]] = []

    def add(self, raw: str, where: str) -> None:
        value = _FLAGS.get(raw.strip().lower())
        if value is None:
            raise BadRequest(
                f"skip_triggers ({where}): must be true, false, 1 or 0 (any case); "
                f"got {shown(raw)}.",
                code="invalid_skip_triggers",
            )
        for other_where, other in self.given:
            if other != value:
                raise BadRequest(
                    f"skip_triggers is {str(other).lower()} in the {other_where} but "
                    f"{str(value).lower()} in the {where}; send it once.",
                    code="conflicting_skip_triggers",
                )
        self.given.append((where, value))

    @property
    def value(self) -> bool:
        return self.given[0][1] if self.given else False


class ImportUpload:
    """Where an upload goes as it arrives: the file's bytes checked and spooled, the
    form's other fields read."""

    def __init__(self, *, skip_triggers: SkipTriggers, spool: UploadSpool) -> None:
        self.skip_triggers = skip_triggers
        self.spool = spool
        self.checks = FileChecks()

    def field(self, name: str, value: str) -> None:
        if name == "skip_triggers":
            self.skip_triggers.add(value, "form")

    async def file_data(self, data: bytes) -> None:
        # A few C passes over a quarter of a megabyte: less than a thread hand-over costs.
        self.checks.feed(data)
        self.spool.write(data)

    async def finish(self) -> None:
        """The file has ended: FileRejected (TooManyRows) if it fails a whole-file check."""
        self.checks.close()
        if self.checks.may_have_too_many_rows:  # more lines than rows allowed: count them
            await asyncio.to_thread(self.checks.count_rows, self.spool.chunks(PARSE_CHUNK))


PARSE_CHUNK: Final = 256 * 1024
"""Bytes of the file parsed at a time: while a chunk's events are sent, the next is parsed."""


class ImportEvents:
    """The rows of a file that passed the whole-file checks → its events in Kafka record
    batches, a chunk of the file at a time (each chunk in a worker thread, while the
    batches of the chunk before are sent).

    Counts the imported rows and the errors as it goes. The only FileRejected it can
    raise is about the header, which comes before any event.
    """

    def __init__(self, rows: ImportRows, chunks: Iterator[bytes], batches: RecordBatches) -> None:
        self.rows = rows
        self._chunks = chunks
        self._batches = batches
        self._closed = False
        self._key = partition_key(rows.unit_id)
        self._partition = batches.partition(self._key)
        self.imported = 0
        self.errors = 0
        self.error_rows: list[RowError] = []

    def next_chunk(self) -> list[ReadyBatch] | None:
        """The batches the next chunk of the file filled (maybe none), the last ones
        after the file's end; None once everything was given."""
        if self._closed:
            return None
        chunk = next(self._chunks, None)
        if chunk is None:
            self._closed = True
            filled = self._add(self.rows.close())
            return filled + self._batches.rest()
        return self._add(self.rows.feed(chunk))

    def _add(self, items: list[LeadEvent | RowError]) -> list[ReadyBatch]:
        key, partition, batches = self._key, self._partition, self._batches
        filled: list[ReadyBatch] = []
        for item in items:
            if isinstance(item, LeadEvent):  # the unit's key: all its events in one partition
                batches.add(partition, key, encode(item), filled)
                self.imported += 1
            else:
                self.errors += 1
                if len(self.error_rows) < import_store.ERROR_ROWS_KEPT:
                    self.error_rows.append(item)
        return filled


def ignored_columns_shown(names: list[str]) -> dict[str, object]:
    """``ignored_columns`` of an answer: at most IGNORED_COLUMNS_SHOWN names of at most
    IGNORED_NAME_SHOWN characters, and ``ignored_columns_truncated: true`` if any was cut."""
    shown = [
        name if len(name) <= IGNORED_NAME_SHOWN else name[: IGNORED_NAME_SHOWN - 1] + "…"
        for name in names[:IGNORED_COLUMNS_SHOWN]
    ]
    if len(names) > IGNORED_COLUMNS_SHOWN or any(map(str.__ne__, shown, names)):
        return {"ignored_columns": shown, "ignored_columns_truncated": True}
    return {"ignored_columns": shown}


def _accepted(
    *,
    imported: int,
    errors: int,
    import_id: str,
    error_rows: list[RowError],
    ignored_columns: list[str],
    replayed: bool = False,
) -> JSON:
    return JSON(
        {
            "imported": imported,
            "errors": errors,
            "import_id": import_id,
            "error_rows": error_rows[:ERROR_ROWS_SHOWN],
            **ignored_columns_shown(ignored_columns),
        },
        status_code=202,
        headers={"Idempotent-Replayed": "true"} if replayed else None,
    )


def _replay(record: import_store.ImportRecord) -> JSON:
    return _accepted(
        imported=record.imported,
        errors=record.errors,
        import_id=record.import_id,
        error_rows=record.error_rows,
        ignored_columns=record.ignored_columns,
        replayed=True,
    )


async def post_import(request: Request) -> JSON:
    """POST /import: a CSV file (multipart field ``file``) → one event per valid row."""
    principal = await require_principal(request)
    state = state_of(request)
    unit_id = principal.unit_id
    key = idempotency_key(request)
    skip_triggers = SkipTriggers()
    for raw in request.query_params.getlist("skip_triggers"):
        skip_triggers.add(raw, "query")
    import_id = import_id_of(unit_id, key)
    done = None
    if key is not None:
        done = await import_store.find(state.pool, unit_id, import_id)
        if done is not None and done.status == "completed":
            return _replay(done)
    async with state.uploads.take(unit_id):
        return await _import(request, state, unit_id, import_id, key, skip_triggers, done)


async def _import(
    request: Request,
    state: GatewayState,
    unit_id: str,
    import_id: str,
    key: str | None,
    skip_triggers: SkipTriggers,
    earlier: import_store.ImportRecord | None,
) -> JSON:
    """Read and check the file of one import, then parse and publish it, holding its slot.

    ``earlier`` is the row a failed or unfinished try with the same key left: its creation
    time and id form make this try's event ids the same as that one's.
    """
    await ensure_reachable(state.producer)  # before reading a file that could not be published

    received_at = datetime.now(UTC)
    with UploadSpool() as spool:
        upload = ImportUpload(skip_triggers=skip_triggers, spool=spool)
        try:
            await read_upload(request, upload)
            await upload.finish()
        except TooManyRows as exc:
            raise PayloadTooLarge(exc.detail, code=exc.code) from None
        except FileRejected as exc:
            raise BadRequest(exc.detail, code=exc.code) from None
        except ClientDisconnect:  # nobody to answer, and nothing was published
            log.info(
                "an upload to import %s was cut off by the client",
                import_id,
                extra={"unit": unit_id, "import_id": import_id},
            )
            return JSON({"error": "client_disconnected"}, status_code=400)
        partitions = await partitions_of(state.producer, state.settings.topics.events)
        created_at = earlier.created_at if earlier is not None else received_at
        id_form = earlier.event_ids if earlier is not None else ORDERED
        while True:
            rows = ImportRows(
                unit_id=unit_id,
                import_id=import_id,
                skip_triggers=skip_triggers.value,
                received_at=received_at,
                event_id=import_event_ids(unit_id, import_id, key, created_at, form=id_form),
            )
            events = ImportEvents(
                rows, spool.chunks(PARSE_CHUNK), RecordBatches(state.producer, partitions)
            )
            try:
                return await _publish(state, events, key, created_at)
            except _NamedByEarlierTry as earlier_try:
                # Nothing was sent yet: parse the file again, its events named as that try's.
                created_at, id_form = earlier_try.created_at, ORDERED


async def _publish(
    state: GatewayState, events: ImportEvents, key: str | None, created_at: datetime
) -> JSON:
    """Parse the checked file and publish its events, the two overlapping; then answer.

    The import is recorded as publishing (:func:`import_store.begin`) before its first
    event is sent, and completed with its counts once Kafka acknowledged the last one.
    """
    rows = events.rows
    unit_id, import_id = rows.unit_id, rows.import_id
    began = False
    parsing: asyncio.Future[list[ReadyBatch] | None] | None = None

    async def chunks() -> AsyncIterator[list[ReadyBatch]]:
        nonlocal began, parsing
        parsing = asyncio.ensure_future(asyncio.to_thread(events.next_chunk))
        while (chunk := await parsing) is not None:
            parsing = asyncio.ensure_future(asyncio.to_thread(events.next_chunk))
            if chunk and not began:
                began = True
                stored = await _begin(state, events, key, created_at)
                if stored is None:
                    raise _CompletedMeanwhile
                if stored != created_at:
                    raise _NamedByEarlierTry(stored)
            yield chunk  # sent while the next chunk is parsed

    try:
        await publish_stream(state.producer, state.settings.topics.events, chunks())
        if not began:  # no event at all (every row an error): nothing was sent
            began = True
            if await _begin(state, events, key, created_at) is None:
                raise _CompletedMeanwhile
    except _CompletedMeanwhile:  # a retry with the same key completed while this one read
        done = await import_store.find(state.pool, unit_id, import_id)
        assert done is not None
        return _replay(done)
    except FileRejected as exc:  # the header: before any event, so nothing was published
        assert not began, "the file checks let through a file refused after its header"
        raise BadRequest(exc.detail, code=exc.code) from None
    except ServiceUnavailable as exc:
        if began:
            await import_store.fail(state.pool, unit_id, import_id, exc.detail, state.publisher)
        raise
    finally:
        if parsing is not None:  # let the worker thread finish before the spool closes
            with contextlib.suppress(Exception):
                await parsing
    assert rows.header is not None
    await import_store.complete(
        state.pool,
        unit_id,
        import_id,
        state.publisher,
        imported=events.imported,
        errors=events.errors,
        error_rows=events.error_rows,
    )
    return _accepted(
        imported=events.imported,
        errors=events.errors,
        import_id=import_id,
        error_rows=events.error_rows,
        ignored_columns=list(rows.header.ignored_columns),
    )


class _CompletedMeanwhile(Exception):
    """A retry with the same key completed the import while this attempt read its file."""


class _NamedByEarlierTry(Exception):
    """A try with the same key recorded the import while this one read its file: the
    import's stored creation time, which names its events, is that try's."""

    def __init__(self, created_at: datetime) -> None:
        super().__init__(created_at)
        self.created_at = created_at


async def _begin(
    state: GatewayState, events: ImportEvents, key: str | None, created_at: datetime
) -> datetime | None:
    """Record the import as publishing: its stored creation time, None if completed."""
    rows = events.rows
    assert rows.header is not None  # an event, or the file's end, comes after the header
    return await import_store.begin(
        state.pool,
        unit_id=rows.unit_id,
        import_id=rows.import_id,
        idempotency_key=key,
        created_at=created_at,
        skip_triggers=rows.skip_triggers,
        ignored_columns=list(rows.header.ignored_columns),
        publisher=state.publisher,
    )


async def get_import(request: Request) -> JSON:
    """GET /imports/{import_id}: the import's counts, every kept error row, and progress."""
    principal = await require_principal(request)
    import_id = path_text(request, "import_id")
    record = await import_store.find(state_of(request).pool, principal.unit_id, import_id)
    if record is None:
        raise NotFound(f"There is no import {shown(import_id)} in your active unit.")
    return JSON(
        {
            "import_id": record.import_id,
            "status": record.status,
            "skip_triggers": record.skip_triggers,
            "rows": record.imported + record.errors,
            "imported": record.imported,
            "errors": record.errors,
            "error_rows": record.error_rows,
            **ignored_columns_shown(record.ignored_columns),
            "applied": record.applied,
            "last_applied_at": record.last_applied_at,
            "created_at": record.created_at,
            "completed_at": record.completed_at,
            "failure": record.failure,
        }
    )


ROUTES: list[Route] = [
    Route("/import", post_import, methods=["POST"]),
    Route("/imports/{import_id}", get_import, methods=["GET"]),
]
