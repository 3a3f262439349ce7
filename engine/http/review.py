"""The admin review queue (``admin:*`` only), its previews, and job tracking.

The review console in the browser and ``ipto review`` are both clients of these routes.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import ADMIN_SCOPE, Principal
from engine.errors import EngineError, NotFound
from engine.http.api import services
from engine.http.identity import EMPTY
from engine.http.objects import object_view
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, Query, route
from engine.http.schemas import PREVIEW, REVIEW_DECISION, STR, batch_results, listing, null, ref
from engine.http.validate import Field
from engine.ids import iso
from engine.objects import OBJECT_MODALITIES, REVIEW_STATES, modality_of
from engine.preview import Preview
from engine.review import BATCH_MAX, PENDING
from engine.store.records import Job, ObjectRecord, QueueFilter

bp = Blueprint("review", __name__)

REJECT = Body("Reject", {"reason": Field(str, nullable=True, max_len=2000)}, optional=True)


def _id_list(value: list[Any]) -> str | None:
    if not value:
        return "must name at least one object"
    if not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        return "items must be object ids"
    return None


APPROVE_BATCH = Body("ApproveBatch", {"object_ids": Field(
    list, required=True, max_items=BATCH_MAX, check=_id_list,
    schema={"minItems": 1, "items": {"type": "string", "minLength": 1, "maxLength": 64}})})
# Previews carry the object's bytes re-encoded: never rendered as a document, never sniffed.
PREVIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=300",
}


def admin_object_view(obj: ObjectRecord, names: dict[str, str]) -> dict[str, Any]:
    """An object as a reviewer sees it: who sent it, what it is, when it expires."""
    return {
        **object_view(obj),
        "tenant_name": names.get(obj.tenant_id),
        "dataset_name": names.get(obj.dataset_id),
        "modality": modality_of(obj.mime_type),
        "review_expires_at": iso(obj.review_deadline) if obj.review_state == "staged" else None,
        "review_reason": obj.review_reason,
        "reviewed_at": iso(obj.reviewed_at),
        "reviewed_by": obj.reviewed_by,
    }


def preview_view(obj: ObjectRecord, shown: Preview) -> dict[str, Any]:
    return {
        "object_id": obj.id,
        "kind": shown.kind,
        "declared_type": obj.mime_type,
        "detected_type": shown.detected_type,
        "problem": shown.problem,
        "text": shown.text,
        "truncated": shown.truncated,
        "page_count": shown.page_count,
        "width": shown.width,
        "height": shown.height,
        "image_url": f"/v1/admin/staged-objects/{obj.id}/preview/image" if shown.kind == "image" else None,
    }


QUEUE_QUERY = (
    Query("review_state", "choice", REVIEW_STATES, description="default: staged and under_review"),
    Query("tenant_id", "text"), Query("dataset_id", "text"),
    Query("modality", "choice", tuple(OBJECT_MODALITIES), description="the object's own, from its MIME type"),
    Query("uploaded_from", "instant", description="inclusive"), Query("uploaded_to", "instant", description="exclusive"),
    Query("order", "choice", ("newest", "oldest")),
    *PAGE,
)


def _queue_filter(query: dict[str, Any]) -> QueueFilter:
    review_state, modality = query["review_state"], query["modality"]
    return QueueFilter(
        review_states=(review_state,) if review_state else PENDING,
        tenant_id=query["tenant_id"],
        dataset_id=query["dataset_id"],
        mime_types=OBJECT_MODALITIES[modality] if modality else None,
        uploaded_from=query["uploaded_from"],
        uploaded_to=query["uploaded_to"],
    )


def job_view(job: Job) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job.id,
        "type": job.type,
        "status": job.status,
        "stage": job.stage,
        "dataset_id": job.dataset_id,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }
    if job.import_id is not None:
        body["import_id"] = job.import_id
    else:
        body["object_id"] = job.object_id
    return body


@route(bp, "GET", "/v1/admin/staged-objects", summary="The review queue", scope=ADMIN_SCOPE, query=QUEUE_QUERY,
       ok=(200, {**listing("objects", ref("AdminObject")), "properties": {
           **listing("objects", ref("AdminObject"))["properties"], "poll_cursor": null(STR)}}))
async def queue(principal: Principal, query: dict[str, Any]) -> Response:
    """``order=oldest`` adds ``poll_cursor``: ask again with it for what arrived since."""
    review = services().review
    f = _queue_filter(query)
    oldest_first = query["order"] == "oldest"
    page, poll_cursor = await review.queue(f, query["cursor"], query["limit"], oldest_first=oldest_first)
    names = await review.names(page.items)
    body: dict[str, Any] = {
        "objects": [admin_object_view(o, names) for o in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more,
    }
    if oldest_first:
        body["poll_cursor"] = poll_cursor
    return ok(body)


@route(bp, "GET", "/v1/admin/staged-objects/<object_id>", summary="Open (claim) a staged object", scope=ADMIN_SCOPE,
       ok=(200, ref("AdminObject")), changes_state=True, errors=(409,))
async def open_object(principal: Principal, object_id: str) -> Response:
    review = services().review
    obj = await review.open(principal, object_id)
    return ok(admin_object_view(obj, await review.names([obj])))


@route(bp, "GET", "/v1/admin/staged-objects/<object_id>/preview", summary="Preview a staged object", scope=ADMIN_SCOPE,
       ok=(200, PREVIEW), errors=(409,))
async def preview(principal: Principal, object_id: str) -> Response:
    obj, shown = await services().review.preview(object_id)
    return ok(preview_view(obj, shown))


@route(bp, "GET", "/v1/admin/staged-objects/<object_id>/preview/image", summary="A staged image, re-encoded",
       scope=ADMIN_SCOPE, ok=(200, {"type": "string", "format": "binary"}), ok_content_type=("image/png", "image/jpeg"), errors=(409,))
async def preview_image(principal: Principal, object_id: str) -> Response:
    data, content_type = await services().review.preview_image(object_id)
    return Response(data, content_type=content_type, headers=PREVIEW_HEADERS)


@route(bp, "POST", "/v1/admin/staged-objects/approve/batch", summary="Approve many", scope=ADMIN_SCOPE, body=APPROVE_BATCH,
       ok=(200, batch_results(REVIEW_DECISION)))
async def approve_batch(principal: Principal, body: dict[str, Any]) -> Response:
    """Each object is decided on its own: one bad id never fails the others."""
    object_ids: list[str] = body["object_ids"]
    results = []
    for index, (object_id, outcome) in enumerate(zip(object_ids, await services().review.approve_many(principal, object_ids), strict=True)):
        if isinstance(outcome, EngineError):
            error = {"code": outcome.code, "message": outcome.message, "details": outcome.details}
            results.append({"index": index, "object_id": object_id, "ok": False, "error": error})
        else:
            obj, job_id = outcome
            data = {"object_id": obj.id, "review_state": obj.review_state, "job_id": job_id}
            results.append({"index": index, "object_id": object_id, "ok": True, "data": data})
    return ok({"results": results})


@route(bp, "POST", "/v1/admin/staged-objects/<object_id>/claim", summary="Claim a staged object", scope=ADMIN_SCOPE,
       body=EMPTY, ok=(200, REVIEW_DECISION))
async def claim(principal: Principal, object_id: str, body: dict[str, Any]) -> Response:
    obj = await services().review.claim(principal, object_id)
    return ok({"object_id": obj.id, "review_state": obj.review_state})


@route(bp, "POST", "/v1/admin/staged-objects/<object_id>/approve", summary="Approve a staged object", scope=ADMIN_SCOPE,
       body=EMPTY, ok=(200, REVIEW_DECISION))
async def approve(principal: Principal, object_id: str, body: dict[str, Any]) -> Response:
    """Starts the processing pipeline (``job_id``)."""
    obj, job_id = await services().review.approve(principal, object_id)
    return ok({"object_id": obj.id, "review_state": obj.review_state, "job_id": job_id})


@route(bp, "POST", "/v1/admin/staged-objects/<object_id>/reject", summary="Reject a staged object", scope=ADMIN_SCOPE,
       body=REJECT, ok=(200, REVIEW_DECISION))
async def reject(principal: Principal, object_id: str, body: dict[str, Any]) -> Response:
    """Purges the bytes; the object is never indexed."""
    obj = await services().review.reject(principal, object_id, body.get("reason"))
    return ok({"object_id": obj.id, "review_state": obj.review_state, "reason": obj.review_reason})


@route(bp, "GET", "/v1/jobs/<job_id>", summary="Get a processing job", scope="datasets:read", ok=(200, ref("Job")))
async def get_job(principal: Principal, job_id: str) -> Response:
    store = services().store
    # Platform admins follow the jobs their approvals started, in any tenant.
    job = await (store.get_job_any(job_id) if ADMIN_SCOPE in principal.scopes else store.get_job(principal.tenant_id, job_id))
    if job is None:
        raise NotFound("job not found")
    if job.tenant_id == principal.tenant_id:
        principal.require_dataset(job.dataset_id)
    return ok(job_view(job))
