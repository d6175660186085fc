"""Reading request bodies, path and query parameters: size, time and shape limits, clear
4xx errors.

Text read from the path or the query goes through :func:`path_text` or :func:`query_text`,
which refuse what Postgres cannot store (:mod:`ingest_gateway.text`) with a 400 naming the
parameter, before it reaches a statement.

A body is read within two deadlines (settings ``body_idle_timeout`` and ``body_timeout``):
no bytes for the first, or more time than the second spent waiting for the client, is a
408 and the connection closes, so that a slow client cannot hold a request slot open.
Time the gateway spends on the bytes it has (parsing a CSV) does not count.

A JSON body is decoded only when it holds at most one JSON value (object keys count) per
:data:`BYTES_PER_VALUE` bytes of its size limit: each value becomes a Python object of 50
bytes or more, so a megabyte of ``[],[],...`` would be 21 MB, while this way the objects of
a body take about as much memory as its size limit (20,971 values for 1 MB, 209,715 for
the 10 MB of ``POST /ingest``). The count is bounded from above in C by counting the
characters that can start a value (``,``, ``:``, ``[``, ``{``); only a body over the bound
is counted again without its strings, and refused (413) when still over.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec
from starlette.requests import Request

from ingest_gateway.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from ingest_gateway.events import MAX_IDENTIFIER
from ingest_gateway.state import state_of
from ingest_gateway.text import identifier_problem

JSON_LIMIT: Final = 1024 * 1024
"""Bytes of a JSON body, unless the endpoint says otherwise."""
BYTES_PER_VALUE: Final = 50
"""Bytes of a body's size limit per JSON value it may hold."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; 408 when the client is too slow (see above)."""
    settings = state_of(request).settings
    idle, budget = settings.body_idle_timeout, settings.body_timeout
    loop = asyncio.get_running_loop()
    stream = request.stream()
    while True:
        started = loop.time()
        try:
            async with asyncio.timeout(min(idle, budget)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(_too_slow(idle, budget, settings.body_timeout)) from None
        budget -= loop.time() - started
        yield chunk


def _too_slow(idle: float, budget: float, total: float) -> str:
    if idle <= budget:
        what = f"sent nothing for {idle:g} seconds"
    else:
        what = f"took over {total:g} seconds to send the body"
    return (
        f"The request {what}, so it was dropped. Send the body at once and at a steady "
        "pace (split a large file into smaller ones on a slow link)."
    )


def count_values_at_most(body: bytes) -> int:
    """An upper bound of the JSON values in ``body`` (keys included), exact on its structure.

    Every value but the first follows a ``,``, a ``:``, a ``[`` or a ``{``. Counting those
    characters inside strings too makes a bound that costs a few milliseconds for 10 MB.
    """
    return 1 + sum(body.count(c) for c in (b",", b":", b"[", b"{"))


def count_values(body: bytes) -> int:
    """The bound of :func:`count_values_at_most` over ``body`` with its strings emptied."""
    return count_values_at_most(_STRING.sub(b'""', body))


async def read_json(request: Request, *, limit: int = JSON_LIMIT) -> Any:
    """The request's JSON body: 413 beyond ``limit`` bytes or ``limit // BYTES_PER_VALUE``
    values, 400 if not JSON, 408 if the client sends it too slowly."""
    return decode_json(await read_json_bytes(request, limit=limit))


def decode_json(data: bytes) -> Any:
    """``data`` as Python objects; 400 if it is not usable JSON."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:
        raise BadRequest(
            "The body is not usable JSON: it nests arrays or objects too deeply.",
            code="invalid_json",
        ) from None


async def read_json_bytes(request: Request, *, limit: int = JSON_LIMIT) -> bytes:
    """The bytes of a JSON body within the limits of :func:`read_json`, not yet decoded
    (for an endpoint that decodes them into its own types)."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise UnsupportedMediaType(f"Send the body as application/json (got {content_type!r}).")
    body = bytearray()
    async for chunk in body_chunks(request):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The JSON body is over the limit of {limit} bytes.")
    data = bytes(body)
    max_values = limit // BYTES_PER_VALUE
    if count_values_at_most(data) > max_values and count_values(data) > max_values:
        raise PayloadTooLarge(
            f"The JSON body holds over {max_values:,} values (object keys count); "
            "send fewer, or split them over several requests.",
            code="too_many_values",
        )
    return data


def query_int(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; 400 naming it otherwise."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"{name}: must be an integer, got {raw!r}.", code="invalid_query"
        ) from None
    if not low <= value <= high:
        raise BadRequest(
            f"{name}: must be between {low} and {high}, got {value}.", code="invalid_query"
        )
    return value


def path_text(request: Request, name: str) -> str:
    """The path parameter ``name``; 400 if it holds a control character."""
    value: str = request.path_params[name]
    if problem := identifier_problem(value):
        raise BadRequest(f"{name} (in the path): {problem}.", code="invalid_path")
    return value


def query_text(request: Request, name: str, *, limit: int = MAX_IDENTIFIER) -> str | None:
    """The query parameter ``name`` (None if absent); 400 if it holds a control character
    or is longer than ``limit`` (by default the longest identifier, which nothing longer
    can match)."""
    value = request.query_params.get(name)
    if value and (problem := identifier_problem(value)):
        raise BadRequest(f"{name}: {problem}.", code="invalid_query")
    if value and len(value) > limit:
        raise BadRequest(
            f"{name}: at most {limit} characters, got {len(value)}.", code="invalid_query"
        )
    return value
