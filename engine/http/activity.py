"""Buyer activity and spend: ``/v1/agent/activity/searches``, ``/accesses``, ``/v1/agent/spend``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from engine.auth import Principal
from engine.http.api import endpoint, services
from engine.http.respond import ok
from engine.http.validate import page_args, query_instant, query_text
from engine.ids import iso
from engine.store.money import AccessView
from engine.store.records import SearchRecord

bp = Blueprint("activity", __name__)


def search_view(s: SearchRecord) -> dict[str, Any]:
    return {"search_id": s.id, "query": s.query, "mode": s.mode, "api_key_id": s.api_key_id, "dataset_ids": list(s.dataset_ids),
            "result_count": s.result_count, "created_at": iso(s.created_at)}


def access_view(v: AccessView) -> dict[str, Any]:
    a = v.access
    return {"access_id": a.id, "search_id": a.search_id, "dataset_id": a.dataset_id, "object_id": a.object_id,
            "api_key_id": a.api_key_id, "amount_micros": a.amount_micros, "currency": a.currency, "disputed": v.disputed,
            "created_at": iso(a.created_at)}


@bp.get("/v1/agent/activity/searches")
@endpoint("usage:read")
async def searches(principal: Principal) -> Response:
    since, until, key = query_instant("from"), query_instant("to"), query_text("api_key_id")
    page = await services().activity.searches(principal, key, since, until, *page_args())
    return ok({"searches": [search_view(s) for s in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@bp.get("/v1/agent/activity/accesses")
@endpoint("usage:read")
async def accesses(principal: Principal) -> Response:
    since, until = query_instant("from"), query_instant("to")
    key, dataset = query_text("api_key_id"), query_text("dataset_id")
    page = await services().activity.accesses(principal, key, dataset, since, until, *page_args())
    return ok({"accesses": [access_view(s.view) for s in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@bp.get("/v1/agent/spend")
@endpoint("billing:read")
async def spend(principal: Principal) -> Response:
    since, until = query_instant("from"), query_instant("to")
    group_by = request.args.get("group_by") or "day"
    currency = request.args.get("currency") or "USD"
    return ok(await services().activity.spend(principal, group_by, currency, since, until))
