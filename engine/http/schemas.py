"""JSON Schemas of what the API answers: the ``data`` of each success envelope.

Each shape sits beside nothing else on purpose: the views (``dataset_view`` …) build
dicts, these say what those dicts hold — every field, its type, whether it may be null,
and its enum taken from the engine's own constants (``engine.datasets.STATUSES`` …) — and
two tests check every answer against them: the fuzzer (``tests/http/test_schemathesis.py``)
and ``tests/http/conftest.py``, which validates each JSON answer the route tests receive
against the document with every object *closed* (a field the document does not name
fails the test), so the views and the document cannot drift.

In the document itself objects stay open (a new field is not a breaking change for a
client); ``required`` lists what is always there. An object whose keys are data (a record
schema, a datapoint, an error's details) says so with ``additionalProperties: true``;
every other object lists its properties.
"""

from __future__ import annotations

from typing import Any

from engine.auth import ACCESS_MODES, ALL_SCOPES, PRINCIPAL_KINDS
from engine.datasets import MONETIZATION_MODES, PRICING_MODELS, SOURCE_MODALITIES, VISIBILITIES
from engine.datasets import STATUSES as DATASET_STATUSES
from engine.imports import TERMINAL as IMPORT_TERMINAL
from engine.market.search import MODES as SEARCH_MODES
from engine.objects import OBJECT_STATUSES, REVIEW_STATES
from engine.pipeline.runner import STAGES
from engine.store.money import DISPUTE_STATES, SPEND_GROUPS
from engine.store.webhook_events import EVENT_TYPES
from engine.store.webhook_records import DELIVERY_STATUSES
from engine.webhooks.endpoints import STATUSES as WEBHOOK_STATUSES

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
FREE_FORM: Schema = {"type": "object", "additionalProperties": True}  # keys are data, not fields
NOTHING: Schema = {"type": "object", "properties": {}, "additionalProperties": False, "description": "nothing: {}"}
MICROS: Schema = {"type": "integer", "description": "millionths of the currency unit"}
CURRENCY: Schema = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"}
DAY: Schema = {"type": "string", "format": "date"}
PERIOD: Schema = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$", "description": "a UTC calendar month, YYYY-MM"}
JOB_STATUSES = ("queued", "running", "succeeded", "failed")
IMPORT_STATUSES = ("uninitialised", "queued", "processing", *IMPORT_TERMINAL)
PAYOUT_STATUSES = ("open", "pending", "released")


def enum(values: tuple[str, ...] | list[str]) -> Schema:
    return {"type": "string", "enum": list(values)}


def null(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(props: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    """An object whose ``props`` are all present except ``optional`` ones."""
    return {"type": "object", "properties": props, "required": [k for k in props if k not in optional]}


def extend(base: Schema, props: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    """``base`` (an :func:`obj`) with more fields: one flat object, so closing it for the
    conformance test does not refuse the other half (as ``allOf`` would)."""
    return {"type": "object", "properties": {**base["properties"], **props},
            "required": [*base["required"], *(k for k in props if k not in optional)]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def listing(items_key: str, item: Schema, **more: Schema) -> Schema:
    """A cursor page: ``{items_key: [...], next_cursor, has_more}`` (+ ``more``)."""
    return obj({items_key: arr(item), "next_cursor": null(STR), "has_more": BOOL, **more})


ERROR_OBJECT: Schema = obj({"code": STR, "message": STR, "details": null(FREE_FORM)})
ERROR: Schema = obj({
    "error": ERROR_OBJECT,
    "request_id": null(STR),
    "timestamp": TIME,
})

USER = obj({"user_id": STR, "email": STR, "name": null(STR), "is_platform_admin": BOOL, "created_at": TIME})
TENANT = obj({"tenant_id": STR, "name": STR, "created_at": TIME})
SESSION_GRANT = obj({"token": STR, "expires_at": TIME, "user": ref("User"), "tenant": ref("Tenant")})
LOGGED_OUT = obj({"logged_out": BOOL})
ME = obj({"user": ref("User"), "tenant": ref("Tenant"), "roles": arr(STR), "scopes": arr(enum(ALL_SCOPES)),
          "auth": obj({"kind": enum(PRINCIPAL_KINDS), "api_key_id": null(STR)})})
HEALTH = obj({"status": enum(("ok", "degraded")), "store": enum(("ok", "down")), "blobs": enum(("ok", "down")), "version": STR})

API_KEY = obj({
    "api_key_id": STR, "name": STR, "prefix": STR, "scopes": arr(enum(ALL_SCOPES)), "dataset_access_mode": enum(ACCESS_MODES),
    "dataset_ids": arr(STR), "created_at": TIME, "last_used_at": null(TIME), "revoked_at": null(TIME),
})
API_KEY_CREATED = extend(API_KEY, {"key": {"type": "string", "pattern": "^ipto_", "description": "shown this once"}})

DATASET = obj({
    "dataset_id": STR, "tenant_id": STR, "name": STR, "description": null(STR), "source_modality": enum(SOURCE_MODALITIES),
    "monetization_mode": enum(MONETIZATION_MODES), "pricing_model": enum(PRICING_MODELS), "visibility": enum(VISIBILITIES),
    "status": enum(DATASET_STATUSES), "object_count": INT, "active_object_count": INT, "total_bytes": INT,
    "total_datapoint_count": INT, "created_at": TIME, "updated_at": TIME, "last_ingest_at": null(TIME),
    "schema": {"anyOf": [{**FREE_FORM, "description": "the record schema (JSON Schema)"}, BOOL, {"type": "null"}]},
    "price_micros": MICROS, "currency": CURRENCY, "current_price_micros": null(MICROS),
})
CATALOG_ENTRY = obj({
    "dataset_id": STR, "name": STR, "description": null(STR), "provider_name": null(STR),
    "source_modality": enum(SOURCE_MODALITIES), "monetization_mode": enum(MONETIZATION_MODES),
    "pricing_model": enum(PRICING_MODELS), "status": enum(DATASET_STATUSES), "active_object_count": INT,
    "total_datapoint_count": INT, "last_ingest_at": null(TIME), "created_at": TIME, "price_micros": MICROS,
    "currency": CURRENCY, "current_price_micros": null(MICROS),
})

OBJECT = obj({
    "object_id": STR, "tenant_id": STR, "dataset_id": STR, "original_filename": STR, "mime_type": STR,
    "size_bytes": INT, "checksum_sha256": null(STR), "status": enum(OBJECT_STATUSES), "review_state": enum(REVIEW_STATES),
    "uploaded_at": null(TIME),
    "artifact_summary": obj({"plain_text": BOOL, "ocr_blocks": BOOL, "chunk_embeddings": BOOL}),
    "latest_job_id": null(STR), "blob_id": STR, "upload_id": null(STR), "failure_reason": null(STR),
    "created_at": TIME, "updated_at": TIME, "deleted_at": null(TIME),
})
INITIATED = obj({
    "upload_id": STR, "object_id": STR, "blob_id": STR, "review_state": enum(REVIEW_STATES),
    "upload_strategy": {"enum": ["single_part", "multipart"]}, "upload_url": null(STR), "expires_at": TIME,
    "part_size_bytes": INT, "parts": arr(obj({"part_number": INT, "upload_url": STR})),
}, optional=("part_size_bytes", "parts"))
CONFIRMED = obj({"object_id": STR, "status": enum(OBJECT_STATUSES), "review_state": enum(REVIEW_STATES),
                 "checksum_sha256": null(STR)})
DOWNLOAD_URL = obj({"download_url": STR, "expires_at": TIME})

ADMIN_OBJECT = extend(OBJECT, {
    "tenant_name": null(STR), "dataset_name": null(STR), "modality": null(STR), "review_expires_at": null(TIME),
    "review_reason": null(STR), "reviewed_at": null(TIME), "reviewed_by": null(STR),
})
PREVIEW = obj({
    "object_id": STR, "kind": STR, "declared_type": STR, "detected_type": null(STR), "problem": null(STR),
    "text": null(STR), "truncated": BOOL, "page_count": null(INT), "width": null(INT), "height": null(INT),
    "image_url": null(STR),
})
REVIEW_DECISION = obj({"object_id": STR, "review_state": enum(REVIEW_STATES), "job_id": STR, "reason": null(STR)},
                      optional=("job_id", "reason"))
JOB = obj({
    "job_id": STR, "type": STR, "status": enum(JOB_STATUSES), "stage": null(enum(STAGES)), "dataset_id": STR, "error": null(STR),
    "attempts": INT, "created_at": TIME, "started_at": null(TIME), "finished_at": null(TIME),
    "object_id": null(STR), "import_id": STR,
}, optional=("object_id", "import_id"))


def batch_results(data: Schema, key: str = "object_id", data_key: str = "data") -> Schema:
    """``{"results": [{index, <key>, ok: true, <data_key>} | {index, <key>, ok: false, error}]}``:
    each item stands alone. ``key=""``: the items carry no id (batch initiate). A failed
    item's id is echoed as it was sent (it may be what made it fail: not a string)."""
    ids_ok: dict[str, Schema] = {key: STR} if key else {}
    ids_bad: dict[str, Schema] = {key: {"description": "the id as sent"}} if key else {}
    done = obj({"index": INT, **ids_ok, "ok": {"const": True}, data_key: data})
    failed = obj({"index": INT, **ids_bad, "ok": {"const": False}, "error": ref("ErrorObject")})
    return obj({"results": arr({"oneOf": [done, failed]})})


IMPORT_UPLOAD_URL = obj({"upload_url": STR, "http_method": {"const": "PUT"}, "content_type": STR, "import_id": STR,
                         "expires_at": TIME})
IMPORT = obj({
    "import_id": STR, "dataset_id": STR, "filename": STR, "status": enum(IMPORT_STATUSES), "accepted_count": INT,
    "rejected_count": INT,
    "errors": arr(obj({"line": null(INT), "field": null(STR), "message": STR})), "reason": null(STR),
    "size_bytes": null(INT), "created_at": TIME, "started_at": null(TIME), "finished_at": null(TIME),
})
DATAPOINT = obj({"import_id": STR, "line": INT, "data": {"description": "the record as accepted (any JSON value)"}})

SEARCH_RESULT = obj({
    "result_id": STR, "rank": INT, "score": NUM, "dataset_id": STR, "object_id": STR, "chunk_index": INT,
    "snippet": STR, "highlights": arr(arr(INT)), "original_filename": STR, "mime_type": STR,
})
SEARCH_PAGE = obj({"search_id": {"type": "string", "pattern": "^srch_"}, "results": arr(ref("SearchResult")), "next_cursor": null(STR), "has_more": BOOL})
ACCESS = obj({
    "access_id": STR, "object_id": STR, "dataset_id": STR, "search_id": null(STR), "result_id": null(STR),
    "download_url": STR, "expires_at": TIME, "charge": obj({"amount_micros": MICROS, "currency": CURRENCY}),
    "original_filename": STR, "mime_type": STR, "size_bytes": INT, "checksum_sha256": null(STR), "created_at": TIME,
})
GRANT = obj({"grant_id": STR, "dataset_id": STR, "tenant_id": STR, "created_at": TIME})

# -- money (API.md "Buyer activity and spend", "Provider analytics and payouts") ---------------
SEARCH_RECORD = obj({"search_id": STR, "query": STR, "mode": enum(SEARCH_MODES), "api_key_id": null(STR),
                     "dataset_ids": arr(STR), "result_count": INT, "created_at": TIME})
ACCESS_RECORD = obj({"access_id": STR, "search_id": null(STR), "dataset_id": STR, "object_id": STR,
                     "api_key_id": null(STR), "amount_micros": MICROS, "currency": CURRENCY, "disputed": BOOL,
                     "created_at": TIME})
SPEND = obj({
    "currency": CURRENCY, "group_by": enum(SPEND_GROUPS), "total_micros": MICROS, "refunds_micros": MICROS,
    "net_micros": {**MICROS, "description": "total_micros - refunds_micros"},
    "groups": arr(obj({"key": {**null(STR), "description": "the day (YYYY-MM-DD), dataset id or API key id "
                                                           "(null: spent with a session)"},
                       "amount_micros": MICROS, "accesses": INT})),
})
REVENUE = {"gross_micros": MICROS, "fee_micros": MICROS, "refunds_micros": MICROS, "earnings_micros": MICROS}
RATIO = {**null(NUM), "description": "null when there were no impressions"}
ANALYTICS = obj({
    "from": null(TIME), "to": null(TIME), "currency": CURRENCY, "dataset_id": null(STR),
    "usage": obj({"searches": INT, "impressions": INT, "accesses": INT, "unique_buyers": INT}),
    "top_keywords": arr(obj({"keyword": STR, "searches": INT})),
    "ranking": obj({"avg_rank": RATIO, "top3_share": RATIO,
                    "by_dataset": arr(obj({"dataset_id": STR, "impressions": INT, "avg_rank": RATIO, "top3_share": RATIO}))}),
    "revenue": obj({**REVENUE, "by_dataset": arr(obj({"dataset_id": STR, **REVENUE})),
                    "by_day": arr(obj({"day": DAY, **REVENUE}))}),
})
PAYOUT = obj({
    "payout_id": {"type": "string", "pattern": "^pay_"}, "period": PERIOD, "period_start": TIME, "period_end": TIME,
    "currency": CURRENCY, **REVENUE, "held_micros": MICROS, "status": enum(PAYOUT_STATUSES), "release_at": TIME,
    "released_at": null(TIME),
})
PAYOUT["properties"]["earnings_micros"] = {**MICROS, "description": "gross - fee - refunds (+ fee refunds) - held"}
DISPUTE = obj({
    "dispute_id": STR, "access_id": STR, "status": enum(DISPUTE_STATES), "reason": STR, "dataset_id": STR,
    "amount_micros": MICROS, "currency": CURRENCY, "period": PERIOD, "created_at": TIME, "resolved_at": null(TIME),
})
ADMIN_DISPUTE = extend(DISPUTE, {"buyer_tenant_id": STR, "provider_tenant_id": STR, "opened_by": STR,
                                 "resolved_by": null(STR)})

# -- webhooks (API.md "Webhooks") -------------------------------------------------------------
WEBHOOK = obj({
    "webhook_id": {"type": "string", "pattern": "^wh_"}, "url": STR, "events": arr(enum((*EVENT_TYPES, "*"))),
    "description": null(STR), "status": enum(WEBHOOK_STATUSES), "disabled_reason": null(STR),
    "failing_since": null(TIME), "previous_secret_expires_at": null(TIME), "created_at": TIME, "updated_at": TIME,
})
WEBHOOK_WITH_SECRET = extend(WEBHOOK, {"secret": {"type": "string", "pattern": "^whsec_", "description": "shown this once"}})
WEBHOOK_DELETED = obj({"webhook_id": STR, "deleted": {"const": True}})
ATTEMPT = obj({"attempt": INT, "started_at": TIME, "status_code": null(INT), "duration_ms": NUM, "error": null(STR),
               "response_excerpt": null(STR)})
DELIVERY = obj({
    "delivery_id": STR, "webhook_id": STR, "event_id": STR, "event_type": enum(EVENT_TYPES),
    "status": enum(DELIVERY_STATUSES), "attempt_count": INT, "next_attempt_at": null(TIME), "last_attempt_at": null(TIME),
    "last_status_code": null(INT), "last_duration_ms": null(NUM), "last_error": null(STR), "created_at": TIME,
    "attempts": arr(ref("DeliveryAttempt")),
})

CONSOLE_LOGIN = obj({"user": ref("User"), "csrf_token": STR, "expires_at": TIME})
CONSOLE_SESSION = obj({"user": ref("User"), "csrf_token": null(STR)})

# Named shapes: components/schemas of the document (referenced where they repeat).
COMPONENTS: dict[str, Schema] = {
    "Error": ERROR, "ErrorObject": ERROR_OBJECT, "User": USER, "Tenant": TENANT, "ApiKey": API_KEY, "Dataset": DATASET,
    "CatalogEntry": CATALOG_ENTRY, "Object": OBJECT, "AdminObject": ADMIN_OBJECT, "Job": JOB, "Import": IMPORT,
    "SearchResult": SEARCH_RESULT, "Grant": GRANT, "UploadInitiated": INITIATED, "UploadConfirmed": CONFIRMED,
    "SearchRecord": SEARCH_RECORD, "AccessRecord": ACCESS_RECORD, "Payout": PAYOUT, "Dispute": DISPUTE,
    "AdminDispute": ADMIN_DISPUTE, "Webhook": WEBHOOK, "WebhookDelivery": DELIVERY, "DeliveryAttempt": ATTEMPT,
}
