"""Datasets (seed 002): fields, defaults, enums, filters, lifecycle, catalog, isolation."""

from __future__ import annotations

import pytest

from engine.datasets import TRANSITIONS, check_transition
from engine.errors import Conflict
from tests.conftest import create_dataset, create_key, error_of

SEED_BODY = {
    "name": "AP Invoices 2025",
    "description": "Invoice corpus for vendor dispute search",
    "source_modality": "document",
    "monetization_mode": "premium",
    "pricing_model": "demand_curve",
    "visibility": "restricted",
}
FIELDS = {
    "dataset_id", "tenant_id", "name", "description", "source_modality", "monetization_mode", "pricing_model",
    "visibility", "status", "object_count", "active_object_count", "total_bytes", "total_datapoint_count",
    "created_at", "updated_at", "last_ingest_at", "schema", "price_micros", "currency", "current_price_micros",
}


async def test_create_with_the_seed_example(client, alice):
    r = await client.post("/v1/datasets", headers=alice.headers, json=SEED_BODY)
    assert r.status_code == 201
    data = r.json()["data"]
    assert set(data) == FIELDS
    assert {k: data[k] for k in SEED_BODY} == SEED_BODY
    assert data["dataset_id"].startswith("dset_") and data["tenant_id"] == alice.tenant_id
    assert data["status"] == "draft"
    assert data["object_count"] == data["active_object_count"] == data["total_bytes"] == data["total_datapoint_count"] == 0
    assert data["last_ingest_at"] is None
    assert data["created_at"] == data["updated_at"]


async def test_create_applies_seed_defaults(client, alice):
    data = await create_dataset(client, alice.headers, name="Only a name")
    assert data["description"] is None
    assert data["source_modality"] == "document"
    assert data["monetization_mode"] == "open"
    assert data["pricing_model"] == "demand_curve"
    assert data["visibility"] == "private"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "x", "monetization_mode": "free"}, "monetization_mode"),
        ({"name": "x", "visibility": "public"}, "visibility"),
        ({"name": "x", "source_modality": "smell"}, "source_modality"),
        ({"name": "x", "pricing_model": 3}, "pricing_model"),
        ({"name": "x", "status": "active"}, "status"),
        ({"name": "x", "description": ["a"]}, "description"),
        ({"name": None}, "name"),
    ],
)
async def test_create_rejects_bad_fields(client, alice, body, field):
    r = await client.post("/v1/datasets", headers=alice.headers, json=body)
    assert r.status_code == 400
    assert field in error_of(r)["details"]["fields"]


async def test_get_list_and_filters(client, alice):
    a = await create_dataset(client, alice.headers, name="a", visibility="listed")
    b = await create_dataset(client, alice.headers, name="b")
    got = (await client.get(f"/v1/datasets/{a['dataset_id']}", headers=alice.headers)).json()["data"]
    assert got == a
    listed = (await client.get("/v1/datasets", headers=alice.headers)).json()["data"]
    assert [d["dataset_id"] for d in listed["datasets"]] == [b["dataset_id"], a["dataset_id"]]
    assert listed["total"] == 2 and listed["has_more"] is False and listed["next_cursor"] is None
    only_listed = (await client.get("/v1/datasets?visibility=listed", headers=alice.headers)).json()["data"]
    assert [d["dataset_id"] for d in only_listed["datasets"]] == [a["dataset_id"]] and only_listed["total"] == 1
    await client.patch(f"/v1/datasets/{b['dataset_id']}", headers=alice.headers, json={"status": "paused"})
    paused = (await client.get("/v1/datasets?status=paused", headers=alice.headers)).json()["data"]
    assert [d["dataset_id"] for d in paused["datasets"]] == [b["dataset_id"]]
    drafts = (await client.get("/v1/datasets?status=draft&visibility=private", headers=alice.headers)).json()["data"]
    assert drafts["datasets"] == [] and drafts["total"] == 0


async def test_patch_changes_only_given_fields(client, alice):
    ds = await create_dataset(client, alice.headers, **SEED_BODY)
    r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers,
                           json={"name": "AP Invoices 2025 (Updated)", "visibility": "listed"})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["name"] == "AP Invoices 2025 (Updated)" and data["visibility"] == "listed"
    assert data["description"] == SEED_BODY["description"] and data["monetization_mode"] == "premium"
    assert data["updated_at"] > ds["updated_at"]
    r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers, json={"description": None})
    assert r.json()["data"]["description"] is None


@pytest.mark.parametrize("body", [{"visibility": "public"}, {"status": "suspended"}, {"status": "deleted"}, {"tenant_id": "tnt_x"}, {"object_count": 5}])
async def test_patch_rejects_bad_fields(client, alice, body):
    ds = await create_dataset(client, alice.headers)
    r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers, json=body)
    assert r.status_code == 400


async def test_pause_and_resume(client, alice):
    ds = await create_dataset(client, alice.headers)
    url = f"/v1/datasets/{ds['dataset_id']}"
    r = await client.patch(url, headers=alice.headers, json={"status": "paused"})
    assert r.json()["data"]["status"] == "paused"
    # resuming lands where the content warrants: an empty dataset is a draft again
    r = await client.patch(url, headers=alice.headers, json={"status": "active"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "draft"


async def test_illegal_status_change_is_409_with_current_state(client, alice):
    ds = await create_dataset(client, alice.headers)
    r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers, json={"status": "active"})
    assert r.status_code == 409
    assert error_of(r)["details"] == {"current_status": "draft", "requested_status": "active"}


def test_transition_table_is_the_only_authority():
    check_transition("draft", "ingesting", "system")
    with pytest.raises(Conflict):
        check_transition("draft", "ingesting", "owner")
    with pytest.raises(Conflict):
        check_transition("deleted", "draft", "owner")
    assert not any(src == "deleted" for src, _ in TRANSITIONS)


async def test_delete_makes_it_gone(client, alice):
    ds = await create_dataset(client, alice.headers)
    r = await client.delete(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["data"] == {}
    assert (await client.get(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)).status_code == 404
    assert (await client.delete(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)).status_code == 404
    assert (await client.get("/v1/datasets", headers=alice.headers)).json()["data"]["total"] == 0


async def test_another_tenants_dataset_is_404_everywhere(client, alice, bob):
    ds = await create_dataset(client, alice.headers, visibility="listed")
    url = f"/v1/datasets/{ds['dataset_id']}"
    for method, body in [("GET", None), ("PATCH", {"name": "mine"}), ("DELETE", None)]:
        r = await client.request(method, url, headers=bob.headers, json=body)
        assert r.status_code == 404, method
        assert error_of(r)["code"] == "not_found"
    assert (await client.get("/v1/datasets", headers=bob.headers)).json()["data"]["total"] == 0
    # bob's all-available key sees no more than bob
    key = await create_key(client, bob.headers, ["datasets:read"])
    assert (await client.get(url, headers={"X-API-Key": key["key"]})).status_code == 404
    assert (await client.get(url, headers=alice.headers)).json()["data"]["name"] == "Test set"


async def test_catalog_lists_listed_datasets_of_every_tenant_with_buyer_fields(client, alice, bob, service):
    from tests.http.test_imports import SCHEMA, jsonl, run_import

    listed = await create_dataset(client, alice.headers, name="public one", visibility="listed", description="d", schema=SCHEMA)
    private = await create_dataset(client, alice.headers, name="private one", schema=SCHEMA)
    restricted = await create_dataset(client, alice.headers, name="restricted one", visibility="restricted", schema=SCHEMA)
    paused = await create_dataset(client, alice.headers, name="paused one", visibility="listed", schema=SCHEMA)
    for ds in (listed, private, restricted, paused):  # each holds a record: something a buyer could use
        await run_import(client, service, alice.headers, ds["dataset_id"], jsonl({"name": "Ann", "age": 31}))
    await client.patch(f"/v1/datasets/{paused['dataset_id']}", headers=alice.headers, json={"status": "paused"})
    r = await client.get("/v1/catalog/datasets", headers=bob.headers)
    assert r.status_code == 200
    items = r.json()["data"]["datasets"]
    assert [i["dataset_id"] for i in items] == [listed["dataset_id"]]
    item = items[0]
    assert "tenant_id" not in item and "total_bytes" not in item
    assert item["name"] == "public one" and item["provider_name"]
    assert (await client.get("/v1/catalog/datasets")).status_code == 401
