"""Grants on a dataset (its owner's): ``/v1/datasets/{id}/grants``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import endpoint, services
from engine.http.respond import ok
from engine.http.validate import Field, json_body, page_args
from engine.ids import iso
from engine.store.records import Grant

bp = Blueprint("grants", __name__)

CREATE = {"tenant_id": Field(str, required=True, min_len=1, max_len=64)}


def grant_view(g: Grant) -> dict[str, Any]:
    return {"grant_id": g.id, "dataset_id": g.dataset_id, "tenant_id": g.tenant_id, "created_at": iso(g.created_at)}


@bp.post("/v1/datasets/<dataset_id>/grants")
@endpoint("datasets:write")
async def create_grant(principal: Principal, dataset_id: str) -> Response:
    body = await json_body(CREATE)
    svc = services()
    ds = await svc.datasets.get(principal, dataset_id)
    return ok(grant_view(await svc.discovery.add_grant(principal, ds, body["tenant_id"])), 201)


@bp.get("/v1/datasets/<dataset_id>/grants")
@endpoint("datasets:write")
async def list_grants(principal: Principal, dataset_id: str) -> Response:
    svc = services()
    ds = await svc.datasets.get(principal, dataset_id)
    page = await svc.discovery.grants(ds, *page_args())
    return ok({"grants": [grant_view(g) for g in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@bp.delete("/v1/datasets/<dataset_id>/grants/<grant_id>")
@endpoint("datasets:write")
async def delete_grant(principal: Principal, dataset_id: str, grant_id: str) -> Response:
    svc = services()
    ds = await svc.datasets.get(principal, dataset_id)
    await svc.discovery.remove_grant(ds, grant_id)
    return ok({})
