"""The provider's side of the money: ``GET /v1/provider/analytics`` and ``/v1/provider/payouts``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, WINDOW, Query, route
from engine.http.schemas import ANALYTICS, listing, ref

bp = Blueprint("provider", __name__)


@route(bp, "GET", "/v1/provider/analytics", summary="Provider analytics", scope="usage:read",
       query=(*WINDOW, Query("dataset_id", "text"), Query("currency", "text")), ok=(200, ANALYTICS))
async def analytics(principal: Principal, query: dict[str, Any]) -> Response:
    since, until = query["from"], query["to"]
    dataset_id = query["dataset_id"]
    return ok(await services().analytics.provider(principal, since, until, dataset_id, request.args.get("currency") or "USD"))


@route(bp, "GET", "/v1/provider/payouts", summary="Provider payouts", scope="billing:read", query=(*WINDOW, *PAGE),
       ok=(200, listing("payouts", ref("Payout"))))
async def payouts(principal: Principal, query: dict[str, Any]) -> Response:
    since, until = query["from"], query["to"]
    svc = services().payouts
    page, previews = await svc.list(principal, since, until, query["cursor"], query["limit"])
    return ok({"payouts": [svc.view(p, previews) for p in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})
