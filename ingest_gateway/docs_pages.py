"""``GET /openapi.json`` (the OpenAPI 3.1 document) and ``GET /docs`` (Swagger UI over it).

Swagger UI's files come from the ``swagger-ui-bundle-v2`` package (pinned in
pyproject.toml) and are served by the gateway under ``/docs/assets/``, so the page works
without reaching any CDN. The document is built from the app's routes at the first
request and kept (:mod:`ingest_gateway.openapi`).
"""

from __future__ import annotations

import html
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from ingest_gateway.responses import JSON

ASSETS: Final = "/docs/assets"

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{assets}/docs.js"></script>
</body>
</html>
"""

_START: Final = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
});
"""


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json."""
    return JSON(_document(request))


async def docs_page(request: Request) -> HTMLResponse:
    """GET /docs: Swagger UI; "Authorize" takes a token from ``leadvibe token create``."""
    title = html.escape(str(_document(request)["info"]["title"]))
    return HTMLResponse(_PAGE.format(title=title, assets=ASSETS))


async def _start_script(request: Request) -> Response:
    # A file of its own rather than an inline script, so that a Content-Security-Policy
    # without 'unsafe-inline' still lets the page run.
    return Response(_START, media_type="text/javascript")


def _document(request: Request) -> dict[str, Any]:
    from ingest_gateway.openapi import build_document  # the document knows every module

    app = request.app
    document: dict[str, Any] | None = getattr(app.state, "openapi", None)
    if document is None:
        document = build_document(app.routes)
        app.state.openapi = document
    return document


ROUTES: Final = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
    Route(f"{ASSETS}/docs.js", _start_script, methods=["GET"], include_in_schema=False),
    Mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets"),
]
