"""The provider's side of the money: ``GET /v1/provider/analytics`` and ``/v1/provider/payouts``."""

from __future__ import annotations

from quart import Blueprint, Response, request

from engine.auth import Principal
from engine.http.api import endpoint, services
from engine.http.respond import ok
from engine.http.validate import page_args, query_instant, query_text

bp = Blueprint("provider", __name__)


@bp.get("/v1/provider/analytics")
@endpoint("usage:read")
async def analytics(principal: Principal) -> Response:
    since, until = query_instant("from"), query_instant("to")
    dataset_id = query_text("dataset_id")
    return ok(await services().analytics.provider(principal, since, until, dataset_id, request.args.get("currency") or "USD"))


@bp.get("/v1/provider/payouts")
@endpoint("billing:read")
async def payouts(principal: Principal) -> Response:
    since, until = query_instant("from"), query_instant("to")
    svc = services().payouts
    page, previews = await svc.list(principal, since, until, *page_args())
    return ok({"payouts": [svc.view(p, previews) for p in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})
