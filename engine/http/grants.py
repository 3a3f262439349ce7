"""Grants on a dataset (its owner's): ``/v1/datasets/{id}/grants``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, route
from engine.http.schemas import NOTHING, listing, ref
from engine.http.validate import Field
from engine.ids import iso
from engine.store.records import Grant

bp = Blueprint("grants", __name__)

CREATE = Body("GrantCreate", {"tenant_id": Field(str, required=True, min_len=1, max_len=64)})
GRANT = ref("Grant")


def grant_view(g: Grant) -> dict[str, Any]:
    return {"grant_id": g.id, "dataset_id": g.dataset_id, "tenant_id": g.tenant_id, "created_at": iso(g.created_at)}


@route(bp, "POST", "/v1/datasets/<dataset_id>/grants", summary="Grant a tenant access", scope="datasets:write", body=CREATE,
       ok=(201, GRANT), errors=(409,))
async def create_grant(principal: Principal, dataset_id: str, body: dict[str, Any]) -> Response:
    svc = services()
    ds = await svc.datasets.get(principal, dataset_id)
    return ok(grant_view(await svc.discovery.add_grant(principal, ds, body["tenant_id"])), 201)


@route(bp, "GET", "/v1/datasets/<dataset_id>/grants", summary="List grants", scope="datasets:write", query=PAGE,
       ok=(200, listing("grants", GRANT)))
async def list_grants(principal: Principal, dataset_id: str, query: dict[str, Any]) -> Response:
    svc = services()
    ds = await svc.datasets.get(principal, dataset_id)
    page = await svc.discovery.grants(ds, query["cursor"], query["limit"])
    return ok({"grants": [grant_view(g) for g in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "DELETE", "/v1/datasets/<dataset_id>/grants/<grant_id>", summary="Revoke a grant", scope="datasets:write",
       ok=(200, NOTHING))
async def delete_grant(principal: Principal, dataset_id: str, grant_id: str) -> Response:
    svc = services()
    ds = await svc.datasets.get(principal, dataset_id)
    await svc.discovery.remove_grant(ds, grant_id)
    return ok({})
