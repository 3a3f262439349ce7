"""Buyer activity and spend: ``/v1/agent/activity/searches``, ``/accesses``, ``/v1/agent/spend``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, WINDOW, Query, route
from engine.http.schemas import SPEND, listing, ref
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


@route(bp, "GET", "/v1/agent/activity/searches", summary="Buyer activity: searches", scope="usage:read",
       query=(Query("api_key_id", "text"), *WINDOW, *PAGE), ok=(200, listing("searches", ref("SearchRecord"))))
async def searches(principal: Principal, query: dict[str, Any]) -> Response:
    since, until, key = query["from"], query["to"], query["api_key_id"]
    page = await services().activity.searches(principal, key, since, until, query["cursor"], query["limit"])
    return ok({"searches": [search_view(s) for s in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "GET", "/v1/agent/activity/accesses", summary="Buyer activity: accesses", scope="usage:read",
       query=(Query("api_key_id", "text"), Query("dataset_id", "text"), *WINDOW, *PAGE), ok=(200, listing("accesses", ref("AccessRecord"))))
async def accesses(principal: Principal, query: dict[str, Any]) -> Response:
    since, until = query["from"], query["to"]
    key, dataset = query["api_key_id"], query["dataset_id"]
    page = await services().activity.accesses(principal, key, dataset, since, until, query["cursor"], query["limit"])
    return ok({"accesses": [access_view(s.view) for s in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "GET", "/v1/agent/spend", summary="Buyer spend", scope="billing:read",
       query=(Query("group_by", "text", description="day (default), dataset or api_key"), Query("currency", "text"), *WINDOW),
       ok=(200, SPEND))
async def spend(principal: Principal, query: dict[str, Any]) -> Response:
    since, until = query["from"], query["to"]
    group_by = request.args.get("group_by") or "day"
    currency = request.args.get("currency") or "USD"
    return ok(await services().activity.spend(principal, group_by, currency, since, until))
