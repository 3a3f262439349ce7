"""``POST /v1/search``: the buyer's search over every dataset it may find."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import Body, route
from engine.http.schemas import SEARCH_PAGE
from engine.http.validate import Field
from engine.market.search import MODES, result_view
from engine.services import Services

bp = Blueprint("search", __name__)

SEARCH = Body("Search", {
    "query": Field(str, required=True, max_len=4096),
    "dataset_ids": Field(list, nullable=True, items=str, max_items=1000),
    "mode": Field(str, choices=MODES),
    "limit": Field(int, min_value=1, max_value=100),
    "cursor": Field(str, nullable=True, max_len=4096),
})


@route(bp, "POST", "/v1/search", summary="Search", scope="search:query", body=SEARCH, ok=(200, SEARCH_PAGE))
async def search(principal: Principal, body: dict[str, Any]) -> Response:
    """Lucene's classic query syntax over every dataset the caller may search; a query that
    does not parse is 400 ``invalid_query`` (``details.position``, ``expected``)."""
    return ok(await search_data(services(), principal, body))


async def search_data(svc: Services, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """What a search answers (through Quart above, or :mod:`engine.http.hot` for a plain request)."""
    page = await svc.search.search(
        principal, body["query"], body.get("dataset_ids"), body.get("mode") or "hybrid", body.get("limit") or 10, body.get("cursor")
    )
    return {
        "search_id": page.search_id,
        "results": [result_view(r) for r in page.results],
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
    }
