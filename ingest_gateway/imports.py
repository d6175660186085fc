"""POST /import and GET /imports/{import_id}: the seed page's Import Events API.

An upload is parsed as it arrives (``uploads`` → ``csv_rows``), its events wait in a spool
on disk, and only once the whole file has arrived and passed the whole-file checks are they
published, batch by batch; 202 comes after Kafka acknowledged the last one.

Parsing, checking, encoding and spooling run in a worker thread, a batch of the file at a
time, so that the event loop goes on answering other requests meanwhile (the parser lets
the loop run between lines). An import holds one of the gateway's upload slots
(``upload_slots``) from before its file is read until it is answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route

from ingest_gateway import import_store
from ingest_gateway.auth import require_principal
from ingest_gateway.bodies import path_text
from ingest_gateway.csv_rows import FileRejected, ImportRows, RowError, TooManyRows
from ingest_gateway.errors import BadRequest, NotFound, PayloadTooLarge, ServiceUnavailable
from ingest_gateway.events import shown
from ingest_gateway.idempotency import ORDERED, idempotency_key, import_event_ids, import_id_of
from ingest_gateway.publishing import ensure_reachable, publish
from ingest_gateway.responses import JSON
from ingest_gateway.spool import EventSpool
from ingest_gateway.state import GatewayState, state_of
from ingest_gateway.uploads import read_upload
from schemas import LeadEvent, decode, encode
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
    """Where an upload goes as it arrives: rows parsed, events spooled, errors counted."""

    def __init__(
        self,
        *,
        unit_id: str,
        import_id: str,
        key: str | None,
        received_at: datetime,
        created_at: datetime,
        id_form: str,
        skip_triggers: SkipTriggers,
        spool: EventSpool,
    ) -> None:
        self.unit_id = unit_id
        self.import_id = import_id
        self.key = key
        self.received_at = received_at
        self.created_at = created_at
        """The import's creation time, as stored (a retry's is the first try's): its ids'."""
        self.id_form = id_form
        self.skip_triggers = skip_triggers
        self.spool = spool
        self.rows: ImportRows | None = None
        self.errors = 0
        self.error_rows: list[RowError] = []

    def field(self, name: str, value: str) -> None:
        if name == "skip_triggers":
            self.skip_triggers.add(value, "form")

    async def file_data(self, data: bytes) -> None:
        await asyncio.to_thread(self._feed, data)

    async def finish(self) -> ImportRows:
        """The file has ended: its last rows; FileRejected if it had no header."""
        return await asyncio.to_thread(self._finish)

    def _feed(self, data: bytes) -> None:
        self._take(self._rows().feed(data))

    def _finish(self) -> ImportRows:
        rows = self._rows()
        self._take(rows.close())
        return rows

    def _rows(self) -> ImportRows:
        if self.rows is None:  # the file begins: skip_triggers is what was given so far
            self.rows = ImportRows(
                unit_id=self.unit_id,
                import_id=self.import_id,
                skip_triggers=self.skip_triggers.value,
                received_at=self.received_at,
                event_id=import_event_ids(
                    self.unit_id, self.import_id, self.key, self.created_at, form=self.id_form
                ),
            )
        return self.rows

    def _take(self, items: list[LeadEvent | RowError]) -> None:
        spool, key = self.spool, partition_key(self.unit_id)
        for item in items:
            if isinstance(item, LeadEvent):
                spool.add(key, encode(item))
            else:
                self.errors += 1
                if len(self.error_rows) < import_store.ERROR_ROWS_KEPT:
                    self.error_rows.append(item)


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
    earlier = None
    if key is not None:
        earlier = await import_store.find(state.pool, unit_id, import_id)
        if earlier is not None and earlier.status == "completed":
            return _replay(earlier)
    async with state.uploads.take(unit_id):
        return await _import(request, state, unit_id, import_id, key, skip_triggers, earlier)


async def _import(
    request: Request,
    state: GatewayState,
    unit_id: str,
    import_id: str,
    key: str | None,
    skip_triggers: SkipTriggers,
    earlier: import_store.ImportRecord | None,
) -> JSON:
    """Read, check, spool and publish the file of one import, holding its upload slot.

    ``earlier`` is the row a failed or unfinished try with the same key left: its creation
    time and id form make this try's event ids the same as that one's.
    """
    await ensure_reachable(state.producer)  # before reading a file that could not be published

    with EventSpool() as spool:
        received_at = datetime.now(UTC)
        upload = ImportUpload(
            unit_id=unit_id,
            import_id=import_id,
            key=key,
            received_at=received_at,
            created_at=earlier.created_at if earlier is not None else received_at,
            id_form=earlier.event_ids if earlier is not None else ORDERED,
            skip_triggers=skip_triggers,
            spool=spool,
        )
        try:
            await read_upload(request, upload)
            rows = await upload.finish()
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
        assert rows.header is not None
        ignored_columns = list(rows.header.ignored_columns)
        skip = skip_triggers.value
        stored = await import_store.begin(
            state.pool,
            unit_id=unit_id,
            import_id=import_id,
            idempotency_key=key,
            created_at=upload.created_at,
            skip_triggers=skip,
            imported=len(spool),
            errors=upload.errors,
            error_rows=upload.error_rows,
            ignored_columns=ignored_columns,
            publisher=state.publisher,
        )
        if stored is None:  # a retry with the same key completed while this one was reading
            done = await import_store.find(state.pool, unit_id, import_id)
            assert done is not None
            return _replay(done)
        # A try with the same key recorded the import while this one was reading: its
        # creation time names the events (ids_from).
        ids_from = None if stored == upload.created_at else stored
        try:
            await _publish(
                state,
                spool,
                rewrite_skip=None if skip == rows.skip_triggers else skip,
                ids=None
                if ids_from is None
                else import_event_ids(unit_id, import_id, key, ids_from),
            )
        except ServiceUnavailable as exc:
            await import_store.fail(state.pool, unit_id, import_id, exc.detail, state.publisher)
            raise
        await import_store.complete(state.pool, unit_id, import_id, state.publisher)
        return _accepted(
            imported=len(spool),
            errors=upload.errors,
            import_id=import_id,
            error_rows=upload.error_rows,
            ignored_columns=ignored_columns,
        )


async def _publish(
    state: GatewayState,
    spool: EventSpool,
    *,
    rewrite_skip: bool | None,
    ids: Callable[[int], str] | None = None,
) -> None:
    """Publish the spooled events, in order, as one stream of record batches.

    ``rewrite_skip`` is set when a skip_triggers form field came after the file, so that
    the events were spooled with the flag as it was before; ``ids`` when the events were
    named after another creation time than the import's stored one (row → event id).
    """
    records = (record for batch in spool.batches() for record in batch)
    if rewrite_skip is not None or ids is not None:
        records = ((key, _rewritten(value, rewrite_skip, ids)) for key, value in records)
    await publish(state.producer, state.settings.topics.events, records)


def _rewritten(value: bytes, skip: bool | None, ids: Callable[[int], str] | None) -> bytes:
    event = decode(value, LeadEvent)
    changes: dict[str, object] = {}
    if skip is not None:
        changes["skip_triggers"] = skip
    if ids is not None and event.row is not None:
        changes["event_id"] = ids(event.row)
    return encode(msgspec.structs.replace(event, **changes))


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
