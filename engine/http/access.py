"""``POST /v1/objects/{id}/access``: a priced, recorded retrieval with a download URL."""

from __future__ import annotations

from quart import Blueprint, Response, request

from engine.auth import Principal
from engine.http.api import endpoint, services
from engine.http.respond import ok
from engine.http.validate import Field, json_body
from engine.ids import iso

bp = Blueprint("access", __name__)

ACCESS = {
    "search_id": Field(str, nullable=True, max_len=64, pattern=r"srch_[a-z2-7]{20}"),
    "result_id": Field(str, nullable=True, max_len=64, pattern=r"res_[a-z2-7]{24}"),
}


@bp.post("/v1/objects/<object_id>/access")
@endpoint("search:query")
async def access(principal: Principal, object_id: str) -> Response:
    body = await json_body(ACCESS, allow_empty=True)
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
