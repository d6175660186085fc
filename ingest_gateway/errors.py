"""Errors a client can cause, and how each becomes a JSON response.

Every error body is ``{"error": code, "detail": a sentence a person can act on}``.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    status = 400
    code = "bad_request"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: str, *, code: str | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"

    def __init__(self, detail: str, *, code: str | None = None, retry_after: int = 5) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


async def api_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    body = {"error": exc.code, "detail": exc.detail, **exc.extra}
    headers = dict(exc.headers or {})
    if isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(body, status_code=exc.status, headers=headers)
