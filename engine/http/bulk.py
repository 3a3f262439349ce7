"""Bulk operations (API.md "Bulk operations"): batch initiate, confirm, delete; one change to many datasets.

Every route answers 200 with ``{"results": [...]}``, one entry per item in the order sent,
each ``ok`` with its data or with its own error object (``{code, message, details}``, as
in the error envelope). The request as a whole fails (an error envelope) only when it
cannot be read at all: not JSON, not 1 to 1,000 items, an unknown or invalid field in
``set``, missing scope, or (batch initiate) a dataset that is not the caller's or takes no
uploads. Scopes are the single routes': ``objects:write``, and ``datasets:write`` for
``PATCH /v1/datasets``. ``Idempotency-Key`` covers the whole batch (one key, one stored
answer); a batch initiation replayed after its URLs expired gets fresh URLs for the same
objects, as a single one does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from quart import Blueprint, Response, current_app

from engine.auth import Principal
from engine.bulk import BATCH_MAX, Bulk, Outcome
from engine.errors import EngineError, InvalidRequest
from engine.http.api import services
from engine.http.datasets import UPDATE, current_prices, dataset_view
from engine.http.objects import INITIATE, _confirmed_view, initiated_view, object_view
from engine.http.respond import ok
from engine.http.routes import Body, route
from engine.http.schemas import batch_results, ref
from engine.http.validate import Field, validate
from engine.ids import iso
from engine.store.records import Dataset

bp = Blueprint("bulk", __name__)

T = TypeVar("T")
MAX_ID_LENGTH = 64


def _count(value: list[Any]) -> str | None:
    if not 1 <= len(value) <= BATCH_MAX:
        return f"must hold 1 to {BATCH_MAX} items (got {len(value)})"
    return None


INITIATE_BATCH = Body("UploadInitiateBatch", {"files": Field(list, required=True, check=_count, schema={"minItems": 1, "maxItems": BATCH_MAX},
                                                          description="each as the single initiate's body (UploadInitiate)")})
IDS_BATCH = Body("ObjectIdsBatch", {"object_ids": Field(list, required=True, check=_count, schema={"minItems": 1, "maxItems": BATCH_MAX})})
UPDATE_BATCH = Body("DatasetUpdateBatch", {"dataset_ids": Field(list, required=True, check=_count, schema={"minItems": 1, "maxItems": BATCH_MAX}),
                                           "set": Field(dict, required=True, description="fields of DatasetUpdate")})


def bulk() -> Bulk:
    """The batch use cases over this app's services (built once per app)."""
    made: Bulk | None = current_app.extensions.get("ipto.bulk")
    if made is None:
        made = current_app.extensions["ipto.bulk"] = Bulk(services().objects)
    return made


def error_view(exc: EngineError) -> dict[str, Any]:
    """An item's error: the error envelope's error object."""
    return {"code": exc.code, "message": exc.message, "details": exc.details}


def _id_item(value: Any, what: str) -> str | EngineError:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        return InvalidRequest(f"each item must be a {what} id (a string of 1 to {MAX_ID_LENGTH} characters)",
                              {"fields": {"id": "must be a non-empty string"}})
    return value


async def _per_item(items: Sequence[T | EngineError], run: Callable[[list[T]], Any]) -> list[Outcome[Any]]:
    """Run ``run`` on the items that parsed; merge its outcomes with the parse errors, in order."""
    good = [item for item in items if not isinstance(item, EngineError)]
    done = iter(await run(good) if good else [])
    return [item if isinstance(item, EngineError) else next(done) for item in items]


def _id_results(ids: Sequence[Any], outcomes: Sequence[Outcome[Any]], view: Callable[[Any], dict[str, Any]],
                key: str = "object_id") -> dict[str, Any]:
    results = []
    for index, (raw, outcome) in enumerate(zip(ids, outcomes, strict=True)):
        if isinstance(outcome, EngineError):
            results.append({"index": index, key: raw, "ok": False, "error": error_view(outcome)})
        else:
            results.append({"index": index, key: raw, "ok": True, "data": view(outcome)})
    return {"results": results}


# -- batch initiate -------------------------------------------------------------------------
def _file_item(value: Any) -> dict[str, Any] | EngineError:
    try:
        return validate(INITIATE.fields, value)
    except InvalidRequest as exc:
        return exc


async def _fresh_batch_urls(principal: Principal, status: int, body: bytes) -> Response | None:
    """A replayed batch initiation whose URLs expired gets fresh ones for the same objects."""
    if status != 200:
        return None
    stored = orjson.loads(body)["data"]
    now = iso(bulk().objects.now())
    stale = [r["upload"]["object_id"] for r in stored["results"] if r["ok"] and r["upload"]["expires_at"] <= now]
    if not stale:
        return None
    fresh = await bulk().renew_many(principal, stale)
    for r in stored["results"]:
        if r["ok"] and r["upload"]["object_id"] in fresh:
            r["upload"] = initiated_view(fresh[r["upload"]["object_id"]])
    return ok(stored)


@route(bp, "POST", "/v1/datasets/<dataset_id>/objects/upload/batch", summary="Initiate many uploads", scope="objects:write",
       body=INITIATE_BATCH, ok=(200, batch_results(ref("UploadInitiated"), key="", data_key="upload")), refresh=_fresh_batch_urls, errors=(409,))
async def initiate_batch(principal: Principal, dataset_id: str, body: dict[str, Any]) -> Response:
    """Each file stands alone: one bad item is an error in its result, never a 400."""
    files = body["files"]
    outcomes = await bulk().initiate_many(principal, dataset_id, [_file_item(f) for f in files])
    results = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, EngineError):
            results.append({"index": index, "ok": False, "error": error_view(outcome)})
        else:
            results.append({"index": index, "ok": True, "upload": initiated_view(outcome)})
    return ok({"results": results})


# -- batch confirm and delete ------------------------------------------------------------------
@route(bp, "POST", "/v1/objects/confirm/batch", summary="Confirm many uploads", scope="objects:write", body=IDS_BATCH,
       ok=(200, batch_results(ref("UploadConfirmed"))))
async def confirm_batch(principal: Principal, body: dict[str, Any]) -> Response:
    ids = body["object_ids"]
    outcomes = await _per_item([_id_item(v, "object") for v in ids], lambda good: bulk().confirm_many(principal, good))
    return ok(_id_results(ids, outcomes, _confirmed_view))


@route(bp, "POST", "/v1/objects/delete/batch", summary="Delete many objects", scope="objects:write", body=IDS_BATCH,
       ok=(200, batch_results(ref("Object"))))
async def delete_batch(principal: Principal, body: dict[str, Any]) -> Response:
    ids = body["object_ids"]
    outcomes = await _per_item([_id_item(v, "object") for v in ids], lambda good: bulk().delete_many(principal, good))
    return ok(_id_results(ids, outcomes, object_view))


# -- one change, many datasets -------------------------------------------------------------------
def _change(raw: dict[str, Any]) -> dict[str, Any]:
    """``set`` checked as the single PATCH's body is; its problems named ``set.<field>``."""
    try:
        change = validate(UPDATE.fields, raw)
    except InvalidRequest as exc:
        fields = (exc.details or {}).get("fields", {})
        raise InvalidRequest(f"invalid fields in set: {', '.join(sorted(fields))}",
                             {"fields": {f"set.{name}": problem for name, problem in fields.items()}}) from None
    if not change:
        raise InvalidRequest("set must change at least one field", {"fields": {"set": "must not be empty"}})
    return change


@route(bp, "PATCH", "/v1/datasets", summary="Update many datasets", scope="datasets:write", body=UPDATE_BATCH,
       ok=(200, batch_results(ref("Dataset"), key="dataset_id")))
async def update_datasets(principal: Principal, body: dict[str, Any]) -> Response:
    change = _change(body["set"])
    ids = body["dataset_ids"]
    outcomes = await _per_item([_id_item(v, "dataset") for v in ids],
                               lambda good: bulk().update_many(principal, good, change))
    updated = [o for o in outcomes if isinstance(o, Dataset)]
    prices = await current_prices(None, updated) if updated else {}
    return ok(_id_results(ids, outcomes, lambda ds: dataset_view(ds, prices[ds.id]), key="dataset_id"))
