"""Paged lists: ``?page=&limit=`` in, ``{"<items>": [...], "page", "limit", "next_page"}`` out.

Pages start at 1; ``limit`` is at most 100. A query fetches ``fetch`` rows (one more than
the page holds) from ``offset``, so the answer can tell whether a next page exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ingest_gateway.bodies import query_int
from ingest_gateway.responses import JSON

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_PAGE = 100_000


@dataclass(frozen=True)
class Page:
    number: int
    limit: int

    @classmethod
    def of(cls, request: Request) -> Page:
        """The page a request asks for; 400 naming ``page`` or ``limit`` if out of range."""
        return cls(
            number=query_int(request, "page", 1, low=1, high=MAX_PAGE),
            limit=query_int(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT),
        )

    @property
    def fetch(self) -> int:
        """Rows to fetch: one more than the page holds."""
        return self.limit + 1

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.limit

    def listing(self, name: str, items: list[Any]) -> JSON:
        """The answer, from ``items`` fetched with :attr:`fetch` and :attr:`offset`."""
        more = len(items) > self.limit
        return JSON(
            {
                name: items[: self.limit],
                "page": self.number,
                "limit": self.limit,
                "next_page": self.number + 1 if more else None,
            }
        )
