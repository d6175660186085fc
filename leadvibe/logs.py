"""Logging of every process: plain text lines by default, JSON lines when asked.

``LEADVIBE_LOG_FORMAT=json`` (setting ``log_format``) makes each record one JSON object
(python-json-logger) with ``time``, ``level``, ``logger``, ``message``, ``service`` (the
process: ``gateway``, ``scorer``, ``trigger_service``, ``leadvibe``) and, where they apply,
``unit``, ``import_id``, ``topic``, ``partition`` and ``offset``: a call passes them as
``extra={...}``, and :func:`log_context` sets them for every record logged inside it. The
plain text format stays as it was (the same facts are in its sentences), so ``make run``'s
logs read as before.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Final, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")

FIELDS: Final = ("unit", "import_id", "topic", "partition", "partitions", "offset")
"""The structured fields a record may carry, beside the standard ones."""

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "leadvibe_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every record logged inside (in this task) carries ``fields`` (None ones left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    """Puts the :func:`log_context` fields on a record (a call's ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def json_formatter(service: str) -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        static_fields={"service": service},
        timestamp="time",
    )


def configure_logging(
    service: str, log_format: LogFormat = "text", *, level: str | int = "INFO"
) -> logging.Handler:
    """Send every logger's records to stderr in ``log_format``; the handler installed.

    Replaces the root logger's handlers, so that calling it again changes the format.
    """
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    if log_format == "json":
        handler.setFormatter(json_formatter(service))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
