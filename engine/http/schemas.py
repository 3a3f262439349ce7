"""JSON Schemas of what the API answers: the ``data`` of each success envelope.

Each shape sits beside nothing else on purpose: the views (``dataset_view`` …) build
dicts, these say what those dicts hold, and the fuzzing test (``tests/http/test_schemathesis.py``)
checks every answer the engine gives against them, so the two cannot drift. Objects allow
more properties than they list (a new field is not a breaking change); ``required`` lists
what is always there.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ANY: Schema = {}
OBJECT_ANY: Schema = {"type": "object"}  # an object whose fields are not (yet) described here


def null(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(props: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    """An object whose ``props`` are all present except ``optional`` ones."""
    return {"type": "object", "properties": props, "required": [k for k in props if k not in optional]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def listing(items_key: str, item: Schema, **more: Schema) -> Schema:
    """A cursor page: ``{items_key: [...], next_cursor, has_more}`` (+ ``more``)."""
    return obj({items_key: arr(item), "next_cursor": null(STR), "has_more": BOOL, **more})


ERROR: Schema = obj({
    "error": obj({"code": STR, "message": STR, "details": null({"type": "object"})}),
    "request_id": null(STR),
    "timestamp": TIME,
})

USER = obj({"user_id": STR, "email": STR, "name": null(STR), "is_platform_admin": BOOL, "created_at": TIME})
TENANT = obj({"tenant_id": STR, "name": STR, "created_at": TIME})
SESSION_GRANT = obj({"token": STR, "expires_at": TIME, "user": ref("User"), "tenant": ref("Tenant")})
LOGGED_OUT = obj({"logged_out": BOOL})
EMPTY = {"type": "object"}
ME = obj({"user": ref("User"), "tenant": ref("Tenant"), "roles": arr(STR), "scopes": arr(STR),
          "auth": obj({"kind": STR, "api_key_id": null(STR)})})
HEALTH = obj({"status": {"enum": ["ok", "degraded"]}, "store": STR, "blobs": STR, "version": STR})

API_KEY = obj({
    "api_key_id": STR, "name": STR, "prefix": STR, "scopes": arr(STR), "dataset_access_mode": STR,
    "dataset_ids": arr(STR), "created_at": TIME, "last_used_at": null(TIME), "revoked_at": null(TIME),
})
API_KEY_CREATED = {"allOf": [ref("ApiKey"), obj({"key": STR})]}

DATASET = obj({
    "dataset_id": STR, "tenant_id": STR, "name": STR, "description": null(STR), "source_modality": STR,
    "monetization_mode": STR, "pricing_model": STR, "visibility": STR, "status": STR, "object_count": INT,
    "active_object_count": INT, "total_bytes": INT, "total_datapoint_count": INT, "created_at": TIME,
    "updated_at": TIME, "last_ingest_at": null(TIME), "schema": null({"type": ["object", "boolean"]}),
    "price_micros": INT, "currency": STR, "current_price_micros": null(INT),
})
CATALOG_ENTRY = obj({
    "dataset_id": STR, "name": STR, "description": null(STR), "provider_name": null(STR), "source_modality": STR,
    "monetization_mode": STR, "pricing_model": STR, "status": STR, "active_object_count": INT,
    "total_datapoint_count": INT, "last_ingest_at": null(TIME), "created_at": TIME, "price_micros": INT,
    "currency": STR, "current_price_micros": null(INT),
})

OBJECT = obj({
    "object_id": STR, "tenant_id": STR, "dataset_id": STR, "original_filename": STR, "mime_type": STR,
    "size_bytes": INT, "checksum_sha256": null(STR), "status": STR, "review_state": STR, "uploaded_at": null(TIME),
    "artifact_summary": obj({"plain_text": BOOL, "ocr_blocks": BOOL, "chunk_embeddings": BOOL}),
    "latest_job_id": null(STR), "blob_id": STR, "upload_id": null(STR), "failure_reason": null(STR),
    "created_at": TIME, "updated_at": TIME, "deleted_at": null(TIME),
})
INITIATED = obj({
    "upload_id": STR, "object_id": STR, "blob_id": STR, "review_state": STR,
    "upload_strategy": {"enum": ["single_part", "multipart"]}, "upload_url": null(STR), "expires_at": TIME,
    "part_size_bytes": INT, "parts": arr(obj({"part_number": INT, "upload_url": STR})),
}, optional=("part_size_bytes", "parts"))
CONFIRMED = obj({"object_id": STR, "status": STR, "review_state": STR, "checksum_sha256": null(STR)})
DOWNLOAD_URL = obj({"download_url": STR, "expires_at": TIME})

ADMIN_OBJECT = {"allOf": [ref("Object"), obj({
    "tenant_name": null(STR), "dataset_name": null(STR), "modality": null(STR), "review_expires_at": null(TIME),
    "review_reason": null(STR), "reviewed_at": null(TIME), "reviewed_by": null(STR),
})]}
PREVIEW = obj({
    "object_id": STR, "kind": STR, "declared_type": STR, "detected_type": null(STR), "problem": null(STR),
    "text": null(STR), "truncated": BOOL, "page_count": null(INT), "width": null(INT), "height": null(INT),
    "image_url": null(STR),
})
REVIEW_DECISION = obj({"object_id": STR, "review_state": STR, "job_id": STR, "reason": null(STR)},
                      optional=("job_id", "reason"))
JOB = obj({
    "job_id": STR, "type": STR, "status": STR, "stage": null(STR), "dataset_id": STR, "error": null(STR),
    "attempts": INT, "created_at": TIME, "started_at": null(TIME), "finished_at": null(TIME),
    "object_id": null(STR), "import_id": STR,
}, optional=("object_id", "import_id"))


def batch_results(data: Schema) -> Schema:
    """``{"results": [{index, object_id, ok, data | error}]}``: each item stands alone."""
    item = obj({"index": INT, "object_id": STR, "ok": BOOL, "data": data,
                "error": obj({"code": STR, "message": STR, "details": null({"type": "object"})})},
               optional=("data", "error"))
    return obj({"results": arr(item)})


IMPORT_UPLOAD_URL = obj({"upload_url": STR, "http_method": {"const": "PUT"}, "content_type": STR, "import_id": STR,
                         "expires_at": TIME})
IMPORT = obj({
    "import_id": STR, "dataset_id": STR, "filename": STR, "status": STR, "accepted_count": INT, "rejected_count": INT,
    "errors": arr(obj({"line": null(INT), "field": null(STR), "message": STR})), "reason": null(STR),
    "size_bytes": null(INT), "created_at": TIME, "started_at": null(TIME), "finished_at": null(TIME),
})
DATAPOINT = obj({"import_id": STR, "line": INT, "data": ANY})

SEARCH_RESULT = obj({
    "result_id": STR, "rank": INT, "score": NUM, "dataset_id": STR, "object_id": STR, "chunk_index": INT,
    "snippet": STR, "highlights": arr(arr(INT)), "original_filename": STR, "mime_type": STR,
})
SEARCH_PAGE = obj({"search_id": STR, "results": arr(ref("SearchResult")), "next_cursor": null(STR), "has_more": BOOL})
ACCESS = obj({
    "access_id": STR, "object_id": STR, "dataset_id": STR, "search_id": null(STR), "result_id": null(STR),
    "download_url": STR, "expires_at": TIME, "charge": obj({"amount_micros": INT, "currency": STR}),
    "original_filename": STR, "mime_type": STR, "size_bytes": INT, "checksum_sha256": null(STR), "created_at": TIME,
})
GRANT = obj({"grant_id": STR, "dataset_id": STR, "tenant_id": STR, "created_at": TIME})

CONSOLE_LOGIN = obj({"user": ref("User"), "csrf_token": STR, "expires_at": TIME})
CONSOLE_SESSION = obj({"user": ref("User"), "csrf_token": null(STR)})

# Named shapes: components/schemas of the document (referenced where they repeat).
COMPONENTS: dict[str, Schema] = {
    "Error": ERROR, "User": USER, "Tenant": TENANT, "ApiKey": API_KEY, "Dataset": DATASET, "CatalogEntry": CATALOG_ENTRY,
    "Object": OBJECT, "AdminObject": ADMIN_OBJECT, "Job": JOB, "Import": IMPORT, "SearchResult": SEARCH_RESULT,
    "Grant": GRANT, "UploadInitiated": INITIATED,
}
