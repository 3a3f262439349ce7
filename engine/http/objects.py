"""Object uploads (initiate, confirm/complete) and objects (get, list, delete, download)."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, Query, route
from engine.http.schemas import CONFIRMED, DOWNLOAD_URL, listing, ref
from engine.http.validate import Field
from engine.ids import iso
from engine.objects import OBJECT_STATUSES, REVIEW_STATES, Initiated
from engine.services import Services
from engine.store.records import ObjectRecord

bp = Blueprint("objects", __name__)


def _sha_check(value: str) -> str | None:
    return None if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value) else "must be 64 hex characters"


def _part_list(value: list[Any]) -> str | None:
    for item in value:
        if not isinstance(item, dict) or set(item) != {"part_number", "etag"}:
            return "items must be objects with part_number and etag"
        if not isinstance(item["part_number"], int) or isinstance(item["part_number"], bool) or not isinstance(item["etag"], str):
            return "part_number must be an integer and etag a string"
    return None


_INITIATE = {
    "filename": Field(str, required=True, min_len=1, max_len=1024, schema={"examples": ["invoice-0425.pdf"]}),
    "content_type": Field(str, required=True, min_len=1, max_len=255, schema={"examples": ["application/pdf", "text/plain"]},
                          description="a MIME type the dataset's source_modality accepts (else 400 naming the allowed ones)"),
    "size_bytes": Field(int, required=True, min_value=1),
    "checksum_sha256": Field(str, nullable=True, check=_sha_check, schema={"pattern": "^[0-9a-fA-F]{64}$"}),
}
INITIATE = Body("UploadInitiate", _INITIATE)
INITIATE_ANY = Body("UploadInitiateAny", {**_INITIATE, "dataset_id": Field(str, required=True, min_len=1, max_len=64)})
_PART = {"type": "object", "properties": {"part_number": {"type": "integer"}, "etag": {"type": "string"}},
         "required": ["part_number", "etag"], "additionalProperties": False}
CONFIRM = Body("UploadConfirm", {"parts": Field(list, max_items=10_000, check=_part_list, schema={"items": _PART},
                                                description="multipart uploads: every part's number and ETag")},
               optional=True)
INITIATED = ref("UploadInitiated")
OBJECT = ref("Object")


def object_view(obj: ObjectRecord) -> dict[str, Any]:
    return {
        "object_id": obj.id,
        "tenant_id": obj.tenant_id,
        "dataset_id": obj.dataset_id,
        "original_filename": obj.original_filename,
        "mime_type": obj.mime_type,
        "size_bytes": obj.size_bytes,
        "checksum_sha256": obj.checksum_sha256,
        "status": obj.status,
        "review_state": obj.review_state,
        "uploaded_at": iso(obj.uploaded_at),
        "artifact_summary": {"plain_text": obj.plain_text, "ocr_blocks": obj.ocr_blocks, "chunk_embeddings": obj.chunk_embeddings},
        "latest_job_id": obj.latest_job_id,
        "blob_id": obj.blob_id,
        "upload_id": obj.upload_id,
        "failure_reason": obj.failure_reason,
        "created_at": iso(obj.created_at),
        "updated_at": iso(obj.updated_at),
        "deleted_at": iso(obj.deleted_at),
    }


def initiated_view(init: Initiated) -> dict[str, Any]:
    body: dict[str, Any] = {
        "upload_id": init.upload.id,
        "object_id": init.obj.id,
        "blob_id": init.obj.blob_id,
        "review_state": init.obj.review_state,
        "upload_strategy": init.upload.strategy,
        "upload_url": init.upload_url,
        "expires_at": iso(init.upload.expires_at),
    }
    if init.upload.strategy == "multipart":
        body["part_size_bytes"] = init.upload.part_size_bytes
        body["parts"] = [{"part_number": n, "upload_url": url} for n, url in init.parts]
    return body


def _confirmed_view(obj: ObjectRecord) -> dict[str, Any]:
    return {"object_id": obj.id, "status": obj.status, "review_state": obj.review_state, "checksum_sha256": obj.checksum_sha256}


async def _fresh_urls(principal: Principal, status: int, body: bytes) -> Response | None:
    """A replayed initiation whose URLs have expired gets fresh ones for the same object."""
    if status != 201:
        return None
    stored = orjson.loads(body)["data"]
    if stored["expires_at"] > iso(services().objects.now()):
        return None
    fresh = await services().objects.renew(principal, stored["object_id"])
    return None if fresh is None else ok(initiated_view(fresh), 201)


async def initiate_data(svc: Services, principal: Principal, dataset_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """What initiate answers (through Quart below, or :mod:`engine.http.hot`)."""
    return initiated_view(await svc.objects.initiate(principal, dataset_id, body))


async def confirm_data(svc: Services, principal: Principal, object_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """What confirm answers (through Quart below, or :mod:`engine.http.hot`)."""
    return _confirmed_view(await svc.objects.confirm(principal, object_id, body.get("parts")))


@route(bp, "POST", "/v1/datasets/<dataset_id>/objects/upload", summary="Initiate an upload", scope="objects:write",
       body=INITIATE, ok=(201, INITIATED), refresh=_fresh_urls, errors=(409,))
async def initiate(principal: Principal, dataset_id: str, body: dict[str, Any]) -> Response:
    """A presigned URL (or one per part above the multipart threshold) for the bytes."""
    return ok(await initiate_data(services(), principal, dataset_id, body), 201)


@route(bp, "POST", "/v1/uploads", summary="Initiate an upload (dataset in the body)", scope="objects:write",
       body=INITIATE_ANY, ok=(201, INITIATED), refresh=_fresh_urls, errors=(404, 409))
async def initiate_any(principal: Principal, body: dict[str, Any]) -> Response:
    dataset_id = body.pop("dataset_id")
    return ok(initiated_view(await services().objects.initiate(principal, dataset_id, body)), 201)


@route(bp, "POST", "/v1/objects/<object_id>/confirm", summary="Confirm an upload", scope="objects:write", body=CONFIRM,
       ok=(200, CONFIRMED))
async def confirm(principal: Principal, object_id: str, body: dict[str, Any]) -> Response:
    """Verifies size and SHA-256 (422 ``size_mismatch`` / ``checksum_mismatch``) and stages the object for review."""
    return ok(await confirm_data(services(), principal, object_id, body))


@route(bp, "POST", "/v1/uploads/<upload_id>/complete", summary="Complete an upload", scope="objects:write", body=CONFIRM,
       ok=(200, CONFIRMED))
async def complete(principal: Principal, upload_id: str, body: dict[str, Any]) -> Response:
    return ok(_confirmed_view(await services().objects.complete(principal, upload_id, body.get("parts"))))


@route(bp, "GET", "/v1/objects/<object_id>", summary="Get an object", scope="datasets:read", ok=(200, OBJECT))
async def get_object(principal: Principal, object_id: str) -> Response:
    return ok(object_view(await services().objects.get(principal, object_id)))


@route(bp, "GET", "/v1/datasets/<dataset_id>/objects", summary="List a dataset's objects", scope="datasets:read",
       query=(Query("status", "choice", OBJECT_STATUSES), Query("review_state", "choice", REVIEW_STATES),
              Query("checksum_sha256", "pattern", pattern="[0-9a-fA-F]{64}", message="64 hex digits (SHA-256)",
                    description="only objects whose verified bytes have this SHA-256"), *PAGE),
       ok=(200, listing("objects", OBJECT)))
async def list_objects(principal: Principal, dataset_id: str, query: dict[str, Any]) -> Response:
    checksum = query["checksum_sha256"]
    page = await services().objects.list_for_dataset(
        principal, dataset_id, query["status"], query["review_state"], query["cursor"], query["limit"],
        checksum_sha256=checksum and checksum.lower(),
    )
    return ok({"objects": [object_view(o) for o in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "DELETE", "/v1/objects/<object_id>", summary="Delete an object", scope="objects:write", ok=(200, OBJECT))
async def delete_object(principal: Principal, object_id: str) -> Response:
    return ok(object_view(await services().objects.delete(principal, object_id)))


@route(bp, "GET", "/v1/objects/<object_id>/download-url", summary="A download URL for an object", scope="datasets:read",
       ok=(200, DOWNLOAD_URL))
async def download_url(principal: Principal, object_id: str) -> Response:
    url, expires_at = await services().objects.download_url(principal, object_id)
    return ok({"download_url": url, "expires_at": iso(expires_at)})
