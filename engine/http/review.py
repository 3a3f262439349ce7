"""The admin review queue (``admin:*`` only), its previews, and job tracking.

The review console in the browser and ``ipto review`` are both clients of these routes.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import ADMIN_SCOPE, Principal
from engine.errors import EngineError, NotFound
from engine.http.api import endpoint, services
from engine.http.objects import object_view
from engine.http.respond import ok
from engine.http.validate import Field, json_body, page_args, query_choice, query_instant, query_text
from engine.ids import iso
from engine.objects import OBJECT_MODALITIES, REVIEW_STATES, modality_of
from engine.preview import Preview
from engine.review import BATCH_MAX, PENDING
from engine.store.records import Job, ObjectRecord, QueueFilter

bp = Blueprint("review", __name__)

REJECT = {"reason": Field(str, nullable=True, max_len=2000)}


def _id_list(value: list[Any]) -> str | None:
    if not value:
        return "must name at least one object"
    if not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        return "items must be object ids"
    return None


APPROVE_BATCH = {"object_ids": Field(list, required=True, max_items=BATCH_MAX, check=_id_list)}
ORDERS = ("newest", "oldest")
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


def _queue_filter() -> QueueFilter:
    review_state = query_choice("review_state", REVIEW_STATES)
    modality = query_choice("modality", tuple(OBJECT_MODALITIES))
    return QueueFilter(
        review_states=(review_state,) if review_state else PENDING,
        tenant_id=query_text("tenant_id"),
        dataset_id=query_text("dataset_id"),
        mime_types=OBJECT_MODALITIES[modality] if modality else None,
        uploaded_from=query_instant("uploaded_from"),
        uploaded_to=query_instant("uploaded_to"),
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


@bp.get("/v1/admin/staged-objects")
@endpoint(ADMIN_SCOPE)
async def queue(principal: Principal) -> Response:
    review = services().review
    f = _queue_filter()
    oldest_first = query_choice("order", ORDERS) == "oldest"
    page, poll_cursor = await review.queue(f, *page_args(), oldest_first=oldest_first)
    names = await review.names(page.items)
    body: dict[str, Any] = {
        "objects": [admin_object_view(o, names) for o in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more,
    }
    if oldest_first:
        body["poll_cursor"] = poll_cursor
    return ok(body)


@bp.get("/v1/admin/staged-objects/<object_id>")
@endpoint(ADMIN_SCOPE, changes_state=True)
async def open_object(principal: Principal, object_id: str) -> Response:
    review = services().review
    obj = await review.open(principal, object_id)
    return ok(admin_object_view(obj, await review.names([obj])))


@bp.get("/v1/admin/staged-objects/<object_id>/preview")
@endpoint(ADMIN_SCOPE)
async def preview(principal: Principal, object_id: str) -> Response:
    obj, shown = await services().review.preview(object_id)
    return ok(preview_view(obj, shown))


@bp.get("/v1/admin/staged-objects/<object_id>/preview/image")
@endpoint(ADMIN_SCOPE)
async def preview_image(principal: Principal, object_id: str) -> Response:
    data, content_type = await services().review.preview_image(object_id)
    return Response(data, content_type=content_type, headers=PREVIEW_HEADERS)


@bp.post("/v1/admin/staged-objects/approve/batch")
@endpoint(ADMIN_SCOPE)
async def approve_batch(principal: Principal) -> Response:
    object_ids: list[str] = (await json_body(APPROVE_BATCH))["object_ids"]
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


@bp.post("/v1/admin/staged-objects/<object_id>/claim")
@endpoint(ADMIN_SCOPE)
async def claim(principal: Principal, object_id: str) -> Response:
    await json_body({}, allow_empty=True)
    obj = await services().review.claim(principal, object_id)
    return ok({"object_id": obj.id, "review_state": obj.review_state})


@bp.post("/v1/admin/staged-objects/<object_id>/approve")
@endpoint(ADMIN_SCOPE)
async def approve(principal: Principal, object_id: str) -> Response:
    await json_body({}, allow_empty=True)
    obj, job_id = await services().review.approve(principal, object_id)
    return ok({"object_id": obj.id, "review_state": obj.review_state, "job_id": job_id})


@bp.post("/v1/admin/staged-objects/<object_id>/reject")
@endpoint(ADMIN_SCOPE)
async def reject(principal: Principal, object_id: str) -> Response:
    body = await json_body(REJECT, allow_empty=True)
    obj = await services().review.reject(principal, object_id, body.get("reason"))
    return ok({"object_id": obj.id, "review_state": obj.review_state, "reason": obj.review_reason})


@bp.get("/v1/jobs/<job_id>")
@endpoint("datasets:read")
async def get_job(principal: Principal, job_id: str) -> Response:
    store = services().store
    # Platform admins follow the jobs their approvals started, in any tenant.
    job = await (store.get_job_any(job_id) if ADMIN_SCOPE in principal.scopes else store.get_job(principal.tenant_id, job_id))
    if job is None:
        raise NotFound("job not found")
    if job.tenant_id == principal.tenant_id:
        principal.require_dataset(job.dataset_id)
    return ok(job_view(job))
