"""Datasets (seed 002) and the buyer-facing catalog."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from engine.auth import Principal
from engine.datasets import MONETIZATION_MODES, OWNER_SETTABLE_STATUSES, PRICING_MODELS, SOURCE_MODALITIES, STATUSES, VISIBILITIES
from engine.http.api import services
from engine.http.respond import ok
from engine.http.routes import PAGE, Body, Query, route
from engine.http.schemas import NOTHING, listing, ref
from engine.http.validate import Field
from engine.ids import iso
from engine.records import check_schema
from engine.store.records import CatalogEntry, Dataset

bp = Blueprint("datasets", __name__)

_COMMON = {
    "description": Field(str, nullable=True, max_len=10_000),
    "source_modality": Field(str, choices=SOURCE_MODALITIES),
    "monetization_mode": Field(str, choices=MONETIZATION_MODES),
    "pricing_model": Field(str, choices=PRICING_MODELS),
    "visibility": Field(str, choices=VISIBILITIES),
    "price_micros": Field(int, min_value=0, max_value=10**15),
    "currency": Field(str, pattern=r"[A-Z]{3}"),
}
CREATE = Body("DatasetCreate", {
    "name": Field(str, required=True, min_len=1, max_len=200), **_COMMON,
    "schema": Field(dict, nullable=True, description="JSON Schema of the dataset's records (V4 imports)"),
})
UPDATE = Body("DatasetUpdate", {
    "name": Field(str, min_len=1, max_len=200), **_COMMON, "status": Field(str, choices=OWNER_SETTABLE_STATUSES),
})
DATASET = ref("Dataset")


def dataset_view(ds: Dataset, current_price_micros: int | None = None) -> dict[str, Any]:
    """``current_price_micros``: what a buyer's next retrieval would be charged (the
    owner's own retrievals are never charged)."""
    return {
        "dataset_id": ds.id,
        "tenant_id": ds.tenant_id,
        "name": ds.name,
        "description": ds.description,
        "source_modality": ds.source_modality,
        "monetization_mode": ds.monetization_mode,
        "pricing_model": ds.pricing_model,
        "visibility": ds.visibility,
        "status": ds.status,
        "object_count": ds.object_count,
        "active_object_count": ds.active_object_count,
        "total_bytes": ds.total_bytes,
        "total_datapoint_count": ds.total_datapoint_count,
        "created_at": iso(ds.created_at),
        "updated_at": iso(ds.updated_at),
        "last_ingest_at": iso(ds.last_ingest_at),
        "schema": ds.record_schema,
        "price_micros": ds.price_micros,
        "currency": ds.currency,
        "current_price_micros": current_price_micros,
    }


def catalog_view(entry: CatalogEntry, current_price_micros: int | None = None) -> dict[str, Any]:
    """What a buyer may see: no tenant id, no storage figures."""
    ds = entry.dataset
    return {
        "dataset_id": ds.id,
        "name": ds.name,
        "description": ds.description,
        "provider_name": entry.provider_name,
        "source_modality": ds.source_modality,
        "monetization_mode": ds.monetization_mode,
        "pricing_model": ds.pricing_model,
        "status": ds.status,
        "active_object_count": ds.active_object_count,
        "total_datapoint_count": ds.total_datapoint_count,
        "last_ingest_at": iso(ds.last_ingest_at),
        "created_at": iso(ds.created_at),
        "price_micros": ds.price_micros,
        "currency": ds.currency,
        "current_price_micros": current_price_micros,
    }


async def current_prices(principal: Principal | None, datasets: list[Dataset]) -> dict[str, int]:
    return await services().accesses.current_prices(
        principal, [(d.id, d.tenant_id, d.monetization_mode, d.pricing_model, d.price_micros) for d in datasets]
    )


async def priced_view(ds: Dataset) -> dict[str, Any]:
    """A dataset read by its owner, with the price a buyer's next retrieval would pay."""
    return dataset_view(ds, (await current_prices(None, [ds]))[ds.id])


@route(bp, "POST", "/v1/datasets", summary="Create a dataset", scope="datasets:write", body=CREATE, ok=(201, DATASET),
       errors=(409,))
async def create_dataset(principal: Principal, body: dict[str, Any]) -> Response:
    schema = body.pop("schema", None)
    if schema is not None:
        body["record_schema"] = check_schema(schema)
    return ok(await priced_view(await services().datasets.create(principal, body)), 201)


@route(bp, "GET", "/v1/datasets", summary="List datasets", scope="datasets:read",
       query=(Query("status", "choice", STATUSES), Query("visibility", "choice", VISIBILITIES), *PAGE),
       ok=(200, listing("datasets", DATASET, total={"type": "integer"})))
async def list_datasets(principal: Principal, query: dict[str, Any]) -> Response:
    page, total = await services().datasets.list(principal, query["status"], query["visibility"], query["cursor"], query["limit"])
    prices = await current_prices(None, list(page.items))
    return ok(
        {
            "datasets": [dataset_view(d, prices[d.id]) for d in page.items],
            "total": total,
            "next_cursor": page.next_cursor,
            "has_more": page.has_more,
        }
    )


@route(bp, "GET", "/v1/datasets/<dataset_id>", summary="Get a dataset", scope="datasets:read", ok=(200, DATASET))
async def get_dataset(principal: Principal, dataset_id: str) -> Response:
    return ok(await priced_view(await services().datasets.get(principal, dataset_id)))


@route(bp, "PATCH", "/v1/datasets/<dataset_id>", summary="Update a dataset", scope="datasets:write", body=UPDATE,
       ok=(200, DATASET), errors=(409,))
async def update_dataset(principal: Principal, dataset_id: str, body: dict[str, Any]) -> Response:
    return ok(await priced_view(await services().datasets.update(principal, dataset_id, body)))


@route(bp, "DELETE", "/v1/datasets/<dataset_id>", summary="Delete a dataset", scope="datasets:write",
       ok=(200, NOTHING), errors=(409,))
async def delete_dataset(principal: Principal, dataset_id: str) -> Response:
    await services().datasets.delete(principal, dataset_id)
    return ok({})


@route(bp, "GET", "/v1/catalog/datasets", summary="The buyer catalog", scope="search:query", query=PAGE,
       ok=(200, listing("datasets", ref("CatalogEntry"))))
async def catalog(principal: Principal, query: dict[str, Any]) -> Response:
    page = await services().datasets.catalog(query["cursor"], query["limit"])
    prices = await current_prices(principal, [e.dataset for e in page.items])
    return ok({"datasets": [catalog_view(e, prices[e.dataset.id]) for e in page.items], "next_cursor": page.next_cursor,
               "has_more": page.has_more})
