"""Errors a client can cause, and how each becomes a JSON response.

Every error body is ``{"error": code, "detail": a sentence a person can act on}``.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match


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


class RequestTimeout(ApiError):
    """The client sent its body too slowly; the connection is closed after the answer."""

    status = 408
    code = "body_timeout"
    headers: ClassVar[dict[str, str] | None] = {"Connection": "close"}


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"

    def __init__(self, detail: str, *, code: str | None = None, retry_after: int = 5) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


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
    if isinstance(exc, ServiceUnavailable | TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def http_error_response(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such path) and 405 (not a method of the path), in our shape.

    The Allow header of a 405 lists the methods of every route of the path: Starlette's
    names only those of the first route it matched, and a path has a route per method.
    """
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed: set[str] = set()
        for route in request.app.routes:
            for method in ("GET", "POST", "PUT", "DELETE"):
                match, _ = route.matches({**request.scope, "method": method})
                if match is Match.FULL:
                    allowed.add(method)
        if "GET" in allowed:
            allowed.add("HEAD")
        headers["Allow"] = ", ".join(sorted(allowed))
        body = {
            "error": "method_not_allowed",
            "detail": f"{request.method} is not a method of {request.url.path}; "
            f"it has {headers['Allow']}.",
        }
    elif exc.status_code == 404:
        body = {
            "error": "not_found",
            "detail": f"There is no {request.url.path}; GET /docs lists every endpoint.",
        }
    else:
        body = {"error": "http_error", "detail": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)
