"""Disputes: buyers open them (``POST /v1/agent/accesses/{id}/dispute``); platform admins
list and resolve them (``/v1/admin/disputes``)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import ADMIN_SCOPE, Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, Query, route
from engine.http.schemas import listing, ref
from engine.http.validate import Field
from engine.ids import iso
from engine.market.disputes import OUTCOMES
from engine.store.money import Dispute

bp = Blueprint("disputes", __name__)

OPEN = Body("DisputeOpen", {"reason": Field(str, required=True, max_len=2000)})
RESOLVE = Body("DisputeResolve", {"outcome": Field(str, required=True, choices=tuple(OUTCOMES))})


def dispute_view(d: Dispute) -> dict[str, Any]:
    return {"dispute_id": d.id, "access_id": d.access_id, "status": d.status, "reason": d.reason, "dataset_id": d.dataset_id,
            "amount_micros": d.amount_micros, "currency": d.currency, "period": d.period, "created_at": iso(d.created_at),
            "resolved_at": iso(d.resolved_at)}


def admin_dispute_view(d: Dispute) -> dict[str, Any]:
    return {**dispute_view(d), "buyer_tenant_id": d.buyer_tenant_id, "provider_tenant_id": d.provider_tenant_id,
            "opened_by": d.opened_by, "resolved_by": d.resolved_by}


@route(bp, "POST", "/v1/agent/accesses/<access_id>/dispute", summary="Dispute an access", scope="search:query", body=OPEN,
       ok=(201, ref("Dispute")), errors=(409,))
async def open_dispute(principal: Principal, access_id: str, body: dict[str, Any]) -> Response:
    return ok(dispute_view(await services().disputes.open(principal, access_id, body["reason"])), 201)


@route(bp, "GET", "/v1/admin/disputes", summary="List disputes", scope=ADMIN_SCOPE, query=(Query("status", "text"), *PAGE),
       ok=(200, listing("disputes", ref("AdminDispute"))))
async def list_disputes(principal: Principal, query: dict[str, Any]) -> Response:
    page = await services().disputes.list(query["status"], query["cursor"], query["limit"])
    return ok({"disputes": [admin_dispute_view(d) for d in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "GET", "/v1/admin/disputes/<dispute_id>", summary="Get a dispute", scope=ADMIN_SCOPE, ok=(200, ref("AdminDispute")))
async def get_dispute(principal: Principal, dispute_id: str) -> Response:
    return ok(admin_dispute_view(await services().disputes.get(dispute_id)))


@route(bp, "POST", "/v1/admin/disputes/<dispute_id>/resolve", summary="Resolve a dispute", scope=ADMIN_SCOPE, body=RESOLVE,
       ok=(200, ref("AdminDispute")), errors=(409,))
async def resolve(principal: Principal, dispute_id: str, body: dict[str, Any]) -> Response:
    return ok(admin_dispute_view(await services().disputes.resolve(principal, dispute_id, body["outcome"])))
