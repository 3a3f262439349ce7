"""The admin review queue (``admin:*`` only) and job tracking."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from engine.auth import ADMIN_SCOPE, Principal
from engine.errors import NotFound
from engine.http.api import endpoint, services
from engine.http.objects import object_view
from engine.http.respond import ok
from engine.http.validate import Field, json_body, page_args, query_choice
from engine.ids import iso
from engine.objects import REVIEW_STATES
from engine.store.records import Job

bp = Blueprint("review", __name__)

REJECT = {"reason": Field(str, nullable=True, max_len=2000)}


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
    review_state = query_choice("review_state", REVIEW_STATES)
    tenant_id = request.args.get("tenant_id") or None
    page = await services().review.queue(review_state, tenant_id, *page_args())
    return ok({"objects": [object_view(o) for o in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@bp.get("/v1/admin/staged-objects/<object_id>")
@endpoint(ADMIN_SCOPE)
async def open_object(principal: Principal, object_id: str) -> Response:
    return ok(object_view(await services().review.open(principal, object_id)))


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
