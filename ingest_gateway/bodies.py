"""Reading request bodies, path and query parameters: size limits and clear 4xx errors.

Text read from the path or the query goes through :func:`path_text` or :func:`query_text`,
which refuse what Postgres cannot store (:mod:`ingest_gateway.text`) with a 400 naming the
parameter, before it reaches a statement.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from ingest_gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ingest_gateway.text import identifier_problem

JSON_LIMIT = 1024 * 1024


async def read_json(request: Request, *, limit: int = JSON_LIMIT) -> Any:
    """The request's JSON body, read up to ``limit`` bytes (413 beyond, 400 if not JSON)."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise UnsupportedMediaType(f"Send the body as application/json (got {content_type!r}).")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The JSON body is over the limit of {limit} bytes.")
    try:
        return msgspec.json.decode(bytes(body))
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.", code="invalid_json") from None


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


def query_text(request: Request, name: str) -> str | None:
    """The query parameter ``name`` (None if absent); 400 if it holds a control character."""
    value = request.query_params.get(name)
    if value and (problem := identifier_problem(value)):
        raise BadRequest(f"{name}: {problem}.", code="invalid_query")
    return value
