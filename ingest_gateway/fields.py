"""Reading the fields of a JSON request body, with 400s that name the field at fault.

Every error is ``{"error": "invalid_field", "field": name, "detail": "name: problem"}``.
"""

from __future__ import annotations

from typing import Any

from ingest_gateway.errors import BadRequest
from ingest_gateway.text import identifier_problem


def invalid(field: str, problem: str) -> BadRequest:
    return BadRequest(f"{field}: {problem}", code="invalid_field", field=field)


def json_object(body: Any, allowed: set[str], what: str) -> dict[str, Any]:
    """``body`` as an object with only ``allowed`` fields: a misspelt field is an error."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_body")
    for key in body:
        if key not in allowed:
            raise invalid(key, f"unknown field; {what} has {', '.join(sorted(allowed))}.")
    return body


def identifier(value: str, field: str) -> str:
    """``value``, if it holds no control character (:mod:`ingest_gateway.text`); else 400."""
    if problem := identifier_problem(value):
        raise invalid(field, f"{problem}.")
    return value


def name(body: dict[str, Any], limit: int) -> str:
    """The required ``name``, trimmed, at most ``limit`` characters, no control character."""
    value = body.get("name")
    if not isinstance(value, str) or not value.strip():
        raise invalid("name", "required, a non-empty string.")
    if len(value.strip()) > limit:
        raise invalid("name", f"at most {limit} characters.")
    return identifier(value.strip(), "name")


def integer(value: Any, field: str, limit: int) -> int:
    """A required integer within ±``limit`` (negative allowed)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(field, "required, an integer (negative allowed).")
    if abs(value) > limit:
        raise invalid(field, f"must be between -{limit} and {limit}.")
    return value


def flag(body: dict[str, Any], field: str, default: bool) -> bool:
    value = body.get(field, default)
    if not isinstance(value, bool):
        raise invalid(field, "must be true or false.")
    return value
