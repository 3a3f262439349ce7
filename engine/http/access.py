"""``POST /v1/objects/{id}/access``: a priced, recorded retrieval with a download URL."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import Body, route
from engine.http.schemas import ACCESS as ACCESS_VIEW
from engine.http.validate import Field
from engine.ids import iso

bp = Blueprint("access", __name__)

ACCESS = Body("Access", {
    "search_id": Field(str, nullable=True, max_len=64, pattern=r"srch_[a-z2-7]{20}"),
    "result_id": Field(str, nullable=True, max_len=64, pattern=r"res_[a-z2-7]{24}"),
}, optional=True)


@route(bp, "POST", "/v1/objects/<object_id>/access", summary="Retrieve an object (priced)", scope="search:query", body=ACCESS,
       ok=(201, ACCESS_VIEW))
async def access(principal: Principal, object_id: str, body: dict[str, Any]) -> Response:
    """One access, one charge; a retry with the same Idempotency-Key is the same access.
    403 ``grant_required`` for a restricted dataset without a grant."""
    done = await services().accesses.access(
        principal, object_id, body.get("search_id"), body.get("result_id"), request.headers.get("Idempotency-Key")
    )
    a = done.access
    return ok({
        "access_id": a.id,
        "object_id": a.object_id,
        "dataset_id": a.dataset_id,
        "search_id": a.search_id,
        "result_id": a.result_id,
        "download_url": done.download_url,
        "expires_at": iso(done.expires_at),
        "charge": {"amount_micros": a.amount_micros, "currency": a.currency},
        "original_filename": done.obj.original_filename,
        "mime_type": done.obj.mime_type,
        "size_bytes": done.obj.size_bytes,
        "checksum_sha256": done.obj.checksum_sha256,
        "created_at": iso(a.created_at),
    }, 201)
