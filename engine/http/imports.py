"""V4 record imports (seed 004): upload URLs, import jobs, the dataset's schema and records."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import endpoint, services
from engine.http.datasets import priced_view
from engine.http.respond import ok
from engine.http.validate import json_body_any, page_args
from engine.ids import iso
from engine.store.records import ImportJob

bp = Blueprint("imports", __name__)


def import_view(imp: ImportJob) -> dict[str, Any]:
    return {
        "import_id": imp.id,
        "dataset_id": imp.dataset_id,
        "filename": imp.filename,
        "status": imp.status,
        "accepted_count": imp.accepted_count,
        "rejected_count": imp.rejected_count,
        "errors": list(imp.errors),
        "reason": imp.reason,
        "size_bytes": imp.size_bytes,
        "created_at": iso(imp.created_at),
        "started_at": iso(imp.started_at),
        "finished_at": iso(imp.finished_at),
    }


@bp.get("/v1/datasets/<dataset_id>/upload-url/<filename>")
@endpoint("datasets:write")
async def upload_url(principal: Principal, dataset_id: str, filename: str) -> Response:
    imp, url, content_type = await services().imports.create(principal, dataset_id, filename)
    return ok({"upload_url": url, "http_method": "PUT", "content_type": content_type, "import_id": imp.id,
               "expires_at": iso(imp.expires_at)})


@bp.get("/v1/datasets/<dataset_id>/imports/<import_id>")
@endpoint("datasets:read")
async def get_dataset_import(principal: Principal, dataset_id: str, import_id: str) -> Response:
    return ok(import_view(await services().imports.get(principal, import_id, dataset_id)))


@bp.get("/v1/imports/<import_id>")
@endpoint("datasets:read")
async def get_import(principal: Principal, import_id: str) -> Response:
    return ok(import_view(await services().imports.get(principal, import_id)))


@bp.get("/v1/datasets/<dataset_id>/imports")
@endpoint("datasets:read")
async def list_imports(principal: Principal, dataset_id: str) -> Response:
    page = await services().imports.list(principal, dataset_id, *page_args())
    return ok({"imports": [import_view(i) for i in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@bp.get("/v1/datasets/<dataset_id>/datapoints")
@endpoint("datasets:read")
async def datapoints(principal: Principal, dataset_id: str) -> Response:
    page = await services().imports.datapoints(principal, dataset_id, *page_args())
    items = [{"import_id": d.import_id, "line": d.line, "data": orjson.Fragment(d.data)} for d in page.items]
    return ok({"datapoints": items, "next_cursor": page.next_cursor, "has_more": page.has_more})


@bp.put("/v1/datasets/<dataset_id>/schema")
@endpoint("datasets:write")
async def put_schema(principal: Principal, dataset_id: str) -> Response:
    body = await json_body_any()
    schema = body["schema"] if isinstance(body, dict) and set(body) == {"schema"} else body
    return ok(await priced_view(await services().imports.set_schema(principal, dataset_id, schema)))
