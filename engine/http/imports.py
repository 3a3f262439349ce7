"""V4 record imports (seed 004): upload URLs, import jobs, the dataset's schema and records."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response

from engine.auth import Principal
from engine.http.api import services
from engine.http.datasets import priced_view
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, route
from engine.http.schemas import DATAPOINT, IMPORT_UPLOAD_URL, listing, ref
from engine.ids import iso
from engine.store.records import ImportJob

bp = Blueprint("imports", __name__)

SCHEMA = Body("RecordSchema", any_json=True,
              description="the dataset's record schema (JSON Schema), as itself or as {\"schema\": …}")
IMPORT = ref("Import")


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


@route(bp, "GET", "/v1/datasets/<dataset_id>/upload-url/<string:filename>", summary="An upload URL for a record file",
       scope="datasets:write", ok=(200, IMPORT_UPLOAD_URL), errors=(400, 409))
async def upload_url(principal: Principal, dataset_id: str, filename: str) -> Response:
    # <string:…>: the file name may hold NUL (%00), which create() drops with the other control characters
    imp, url, content_type = await services().imports.create(principal, dataset_id, filename)
    return ok({"upload_url": url, "http_method": "PUT", "content_type": content_type, "import_id": imp.id,
               "expires_at": iso(imp.expires_at)})


@route(bp, "GET", "/v1/datasets/<dataset_id>/imports/<import_id>", summary="Get a dataset's import", scope="datasets:read",
       ok=(200, IMPORT))
async def get_dataset_import(principal: Principal, dataset_id: str, import_id: str) -> Response:
    return ok(import_view(await services().imports.get(principal, import_id, dataset_id)))


@route(bp, "GET", "/v1/imports/<import_id>", summary="Get an import", scope="datasets:read", ok=(200, IMPORT))
async def get_import(principal: Principal, import_id: str) -> Response:
    return ok(import_view(await services().imports.get(principal, import_id)))


@route(bp, "GET", "/v1/datasets/<dataset_id>/imports", summary="List a dataset's imports", scope="datasets:read", query=PAGE,
       ok=(200, listing("imports", IMPORT)))
async def list_imports(principal: Principal, dataset_id: str, query: dict[str, Any]) -> Response:
    page = await services().imports.list(principal, dataset_id, query["cursor"], query["limit"])
    return ok({"imports": [import_view(i) for i in page.items], "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "GET", "/v1/datasets/<dataset_id>/datapoints", summary="A dataset's accepted records", scope="datasets:read",
       query=PAGE, ok=(200, listing("datapoints", DATAPOINT)))
async def datapoints(principal: Principal, dataset_id: str, query: dict[str, Any]) -> Response:
    page = await services().imports.datapoints(principal, dataset_id, query["cursor"], query["limit"])
    items = [{"import_id": d.import_id, "line": d.line, "data": orjson.Fragment(d.data)} for d in page.items]
    return ok({"datapoints": items, "next_cursor": page.next_cursor, "has_more": page.has_more})


@route(bp, "PUT", "/v1/datasets/<dataset_id>/schema", summary="Set the record schema", scope="datasets:write", body=SCHEMA,
       ok=(200, ref("Dataset")), errors=(409,))
async def put_schema(principal: Principal, dataset_id: str, body: Any) -> Response:
    schema = body["schema"] if isinstance(body, dict) and set(body) == {"schema"} else body
    return ok(await priced_view(await services().imports.set_schema(principal, dataset_id, schema)))
