"""The document: the app's routes, each with its :class:`~.operations.Operation`.

Every Route in the schema (``include_in_schema``) must have an Operation; its path,
methods and path parameters are the route's own. Schemas of records are built once with
``msgspec.json.schema_components`` and referenced from ``components.schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from starlette.routing import BaseRoute, Route

from ingest_gateway.bodies import BYTES_PER_VALUE, JSON_LIMIT
from ingest_gateway.openapi import records
from ingest_gateway.openapi.operations import OPERATIONS, Operation

TITLE: Final = "LeadVibe"
VERSION: Final = "0.1.0"
REF: Final = "#/components/schemas/{name}"

DESCRIPTION: Final = f"""Event-sourced lead scoring: events in (CSV imports and live JSON),
scores, rulesets and milestone triggers out.

Every request but the health checks and the documentation carries
`Authorization: Bearer <token>` (`leadvibe token create --org ORG --unit UNIT` prints one)
and acts in the token's active Organizational Unit (`GET /org-units`).

Every error body is `{{"error": code, "detail": a sentence saying what to do}}`; the codes
of each answer are listed under it. A JSON body is read within 20 s of silence and 120 s in
all (408 `body_timeout`), and holds at most one JSON value per {BYTES_PER_VALUE} bytes of its
size limit ({JSON_LIMIT // BYTES_PER_VALUE:,} for the 1 MB of most endpoints; 413
`too_many_values`). Text fields refuse control characters. docs/api.md has the details."""

JSON_BODY_ERRORS: Final = {
    400: ("invalid_json",),
    408: ("body_timeout",),
    413: ("payload_too_large", "too_many_values"),
    415: ("unsupported_media_type",),
}
_HEADER_SCHEMAS: Final = {
    "Retry-After": {"type": "string", "pattern": "^[0-9]+$"},
    "WWW-Authenticate": {"type": "string"},
}
_PATH_PARAM: Final = {
    "type": "string",
    "minLength": 1,
    "pattern": "^[^/\\u0000-\\u001f\\u007f-\\u009f]+$",
}


class UndescribedRoute(LookupError):
    """A route the document has no Operation for."""


def _records(operations: Sequence[Operation]) -> list[Any]:
    """Every record the operations name, in a stable order."""
    found: dict[str, Any] = {"Error": records.Error}

    def visit(value: Any) -> None:
        if isinstance(value, type) and issubclass(value, msgspec.Struct):
            found.setdefault(value.__name__, value)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for op in operations:
        visit(op.body)
        visit(op.error_record)
        for answer in op.answers.values():
            visit(answer.record)
    return list(found.values())


class _Schemas:
    def __init__(self, operations: Sequence[Operation]) -> None:
        types = _records(operations)
        refs, self.components = msgspec.json.schema_components(types, ref_template=REF)
        self._refs = {t: ref for t, ref in zip(types, refs, strict=True)}

    def of(self, value: Any) -> Any:
        """A record's reference, or a JSON Schema with the records in it referenced."""
        if isinstance(value, type) and value in self._refs:
            return self._refs[value]
        if isinstance(value, dict):
            return {k: self.of(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.of(v) for v in value]
        return value


def _error_response(schemas: _Schemas, record: Any, status: int, codes: Sequence[str]) -> Any:
    headers: dict[str, Any] = {}
    if status in (429, 503):
        headers["Retry-After"] = {
            "description": "Seconds to wait before sending it again.",
            "required": True,
            "schema": _HEADER_SCHEMAS["Retry-After"],
        }
    if status == 401:
        headers["WWW-Authenticate"] = {
            "description": "Bearer",
            "required": True,
            "schema": _HEADER_SCHEMAS["WWW-Authenticate"],
        }
    schema = {
        "allOf": [schemas.of(record), {"properties": {"error": {"enum": sorted(set(codes))}}}]
    }
    answer: dict[str, Any] = {
        "description": "Error codes: " + ", ".join(f"`{c}`" for c in sorted(set(codes))) + ".",
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _operation(route: Route, method: str, op: Operation, schemas: _Schemas, op_id: str) -> Any:
    errors: dict[int, list[str]] = {}

    def add(status: int, codes: Sequence[str]) -> None:
        errors.setdefault(status, []).extend(codes)

    for status, codes in op.errors.items():
        add(status, codes)
    if op.auth:
        add(401, ("unauthorized",))
        add(503, ("database_unavailable",))
    if route.param_convertors:
        add(400, ("invalid_path",))
    if any(p.where == "query" for p in op.params):
        add(400, ("invalid_query",))
    if op.body is not None and op.body_kind == "json" and op.body_errors:
        for status, codes in JSON_BODY_ERRORS.items():
            add(status, codes)

    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": op.path_params.get(name, ""),
            "schema": _PATH_PARAM,
        }
        for name in route.param_convertors
    ]
    parameters += [
        {
            "name": p.name,
            "in": p.where,
            "required": p.required,
            "description": p.description,
            "schema": p.schema,
        }
        for p in op.params
    ]
    responses: dict[str, Any] = {}
    for status, answer in sorted(op.answers.items()):
        body: dict[str, Any] = {"description": answer.description}
        if answer.record is not None:
            body["content"] = {answer.media_type: {"schema": schemas.of(answer.record)}}
        if answer.headers:
            body["headers"] = {
                name: {"description": text, "schema": _HEADER_SCHEMAS.get(name, {"type": "string"})}
                for name, text in answer.headers.items()
            }
        responses[str(status)] = body
    for status, listed in sorted(errors.items()):
        if str(status) in responses:  # e.g. 503 of /health: the answer's own body
            continue
        responses[str(status)] = _error_response(schemas, op.error_record, status, listed)

    operation: dict[str, Any] = {
        "operationId": op_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if op.description:
        operation["description"] = op.description
    if not op.auth:
        operation["security"] = []
    if op.body is not None:
        media = "multipart/form-data" if op.body_kind == "multipart" else "application/json"
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schemas.of(op.body)}},
        }
    return operation


def _operation_id(route: Route, method: str, taken: set[str]) -> str:
    name = getattr(route.endpoint, "__name__", "operation")
    op_id = name
    if op_id in taken:  # one endpoint under two paths
        op_id = f"{name}_{re.sub('[^a-z0-9]+', '_', route.path.lower()).strip('_')}"
    taken.add(op_id)
    return op_id


def described_routes(routes: Sequence[BaseRoute]) -> list[Route]:
    """The routes the document describes: every Route in the schema."""
    return [r for r in routes if isinstance(r, Route) and r.include_in_schema]


def build_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``; UndescribedRoute if one has no Operation."""
    described = described_routes(routes)
    for route in described:
        if route.endpoint not in OPERATIONS:
            raise UndescribedRoute(
                f"{sorted(route.methods or ())} {route.path}: add its Operation to "
                "ingest_gateway/openapi/operations.py"
            )
    schemas = _Schemas([OPERATIONS[r.endpoint] for r in described])
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for route in described:
        op = OPERATIONS[route.endpoint]
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op_id = _operation_id(route, method, taken)
            paths.setdefault(route.path, {})[method.lower()] = _operation(
                route, method, op, schemas, op_id
            )
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": t} for t in dict.fromkeys(OPERATIONS[r.endpoint].tag for r in described)],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from 'leadvibe token create'.",
                }
            },
        },
    }
