"""JSON responses encoded by msgspec: datetimes as RFC 3339, jsonb passed through as is."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

_encoder = msgspec.json.Encoder()


class JSON(Response):
    """Like Starlette's JSONResponse; also encodes datetimes and ``msgspec.Raw`` JSON."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)
