"""Who may find what: visibility, grants, dataset states, allow-list keys, tenants apart.

Two tenants throughout: nothing of another tenant's private or ungranted content may show,
not in results, counts, snippets or errors."""

from __future__ import annotations

import pytest

from tests.conftest import create_dataset, create_key, error_of, make_config
from tests.http.market_helpers import ADMIN, admin_headers, found, publish, search
from tests.rawdb import query


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"pipeline.retry_backoff_seconds": 0.05})


@pytest.fixture(name="world")
async def _world(client, alice, bob, service):
    """Bob provides three datasets, one per visibility, each holding the word 'zebra'."""
    admin = await admin_headers(client)
    out = {}
    for visibility in ("private", "listed", "restricted"):
        ds = await create_dataset(client, bob.headers, name=visibility, visibility=visibility)
        ids = await publish(client, service, admin, bob.headers, ds["dataset_id"], {f"{visibility}.txt": f"zebra {visibility} stripes"})
        out[visibility] = {"dataset_id": ds["dataset_id"], "object_id": ids[f"{visibility}.txt"]}
    return out


async def test_visibility_decides_who_finds_what(client, alice, bob, world):
    assert await found(client, alice.headers, "zebra", mode="lexical") == ["listed.txt"]
    assert sorted(await found(client, bob.headers, "zebra", mode="lexical")) == ["listed.txt", "private.txt", "restricted.txt"]
    for mode in ("vector", "hybrid"):
        assert await found(client, alice.headers, "zebra stripes", mode=mode) == ["listed.txt"]
    r = await search(client, alice.headers, "private OR restricted", mode="lexical")
    assert r.json()["data"]["results"] == []


async def test_naming_a_dataset_one_may_not_search_is_404(client, alice, world):
    for visibility in ("private", "restricted"):
        r = await search(client, alice.headers, "zebra", dataset_ids=[world[visibility]["dataset_id"]])
        assert r.status_code == 404 and error_of(r)["details"]["dataset_id"] == world[visibility]["dataset_id"]
    r = await search(client, alice.headers, "zebra", dataset_ids=["dset_doesnotexist00000000"])
    assert r.status_code == 404
    assert await found(client, alice.headers, "zebra", dataset_ids=[world["listed"]["dataset_id"]]) == ["listed.txt"]


async def test_grants_open_restricted_datasets_at_once_and_close_them_at_once(client, alice, bob, world):
    restricted = world["restricted"]["dataset_id"]
    r = await client.post(f"/v1/datasets/{restricted}/grants", headers=bob.headers, json={"tenant_id": alice.tenant_id})
    assert r.status_code == 201, r.text
    grant = r.json()["data"]
    assert grant["grant_id"].startswith("grt_") and grant["dataset_id"] == restricted and grant["tenant_id"] == alice.tenant_id
    assert sorted(await found(client, alice.headers, "zebra", mode="lexical")) == ["listed.txt", "restricted.txt"]
    assert await found(client, alice.headers, "zebra", dataset_ids=[restricted]) == ["restricted.txt"]
    listed = (await client.get(f"/v1/datasets/{restricted}/grants", headers=bob.headers)).json()["data"]
    assert [g["grant_id"] for g in listed["grants"]] == [grant["grant_id"]] and listed["has_more"] is False
    again = await client.post(f"/v1/datasets/{restricted}/grants", headers=bob.headers, json={"tenant_id": alice.tenant_id})
    assert again.status_code == 409 and error_of(again)["details"]["grant_id"] == grant["grant_id"]
    r = await client.delete(f"/v1/datasets/{restricted}/grants/{grant['grant_id']}", headers=bob.headers)
    assert r.status_code == 200
    assert await found(client, alice.headers, "zebra", mode="lexical") == ["listed.txt"]
    assert (await client.delete(f"/v1/datasets/{restricted}/grants/{grant['grant_id']}", headers=bob.headers)).status_code == 404


async def test_grants_are_the_owners_alone(client, alice, bob, world):
    restricted = world["restricted"]["dataset_id"]
    for method, path, body in [("POST", f"/v1/datasets/{restricted}/grants", {"tenant_id": alice.tenant_id}),
                               ("GET", f"/v1/datasets/{restricted}/grants", None)]:
        r = await client.request(method, path, headers=alice.headers, json=body)
        assert r.status_code == 404, r.text  # another tenant's dataset does not exist for alice
    key = (await create_key(client, bob.headers, ["datasets:read", "search:query"]))["key"]
    r = await client.post(f"/v1/datasets/{restricted}/grants", headers={"X-API-Key": key}, json={"tenant_id": alice.tenant_id})
    assert r.status_code == 403 and error_of(r)["details"]["required_scope"] == "datasets:write"
    bad = [{"tenant_id": bob.tenant_id}, {"tenant_id": "tnt_nobody0000000000000"}, {}, {"tenant_id": 7}]
    statuses = [(await client.post(f"/v1/datasets/{restricted}/grants", headers=bob.headers, json=b)).status_code for b in bad]
    assert statuses == [400, 404, 400, 400]


async def test_paused_datasets_and_inactive_objects_are_not_found_by_others(client, alice, bob, world, service):
    listed = world["listed"]["dataset_id"]
    assert (await client.patch(f"/v1/datasets/{listed}", headers=bob.headers, json={"status": "paused"})).status_code == 200
    assert await found(client, alice.headers, "zebra", mode="lexical") == []
    assert "listed.txt" in await found(client, bob.headers, "zebra", mode="lexical")  # the owner still finds it
    assert (await client.patch(f"/v1/datasets/{listed}", headers=bob.headers, json={"status": "active"})).status_code == 200
    assert await found(client, alice.headers, "zebra", mode="lexical") == ["listed.txt"]
    await client.delete(f"/v1/objects/{world['listed']['object_id']}", headers=bob.headers)
    for mode in ("lexical", "vector", "hybrid"):
        assert await found(client, alice.headers, "zebra stripes", mode=mode) == []


async def test_cached_discovery_follows_every_change_at_once(client, alice, bob, world, cfg):
    """Each tenant's searchable datasets are cached; every change that decides them counts
    from the next search even right after a cached one, also a change written by another
    process straight into the store."""
    listed, restricted = world["listed"]["dataset_id"], world["restricted"]["dataset_id"]

    async def alice_finds() -> list[str]:
        return sorted(await found(client, alice.headers, "zebra", mode="lexical"))

    assert await alice_finds() == ["listed.txt"]  # cached now
    assert (await client.patch(f"/v1/datasets/{listed}", headers=bob.headers, json={"visibility": "private"})).status_code == 200
    assert await alice_finds() == []
    assert (await search(client, alice.headers, "zebra", dataset_ids=[listed])).status_code == 404
    assert (await client.patch(f"/v1/datasets/{listed}", headers=bob.headers, json={"visibility": "listed"})).status_code == 200
    assert await alice_finds() == ["listed.txt"]
    r = await client.post(f"/v1/datasets/{restricted}/grants", headers=bob.headers, json={"tenant_id": alice.tenant_id})
    assert r.status_code == 201
    assert await alice_finds() == ["listed.txt", "restricted.txt"]
    assert await found(client, alice.headers, "zebra stripes", mode="vector", dataset_ids=[restricted]) == ["restricted.txt"]
    assert (await client.delete(f"/v1/datasets/{restricted}/grants/{r.json()['data']['grant_id']}", headers=bob.headers)).status_code == 200
    assert await alice_finds() == ["listed.txt"]
    # another engine process on the same store: its writes move the same version
    query(cfg, "UPDATE datasets SET visibility = 'restricted' WHERE id = ?", listed)
    assert await alice_finds() == []
    query(cfg, "INSERT INTO dataset_grants (id, dataset_id, tenant_id, created_by, created_at)"
          " SELECT ?, ?, ?, ?, created_at FROM datasets WHERE id = ?",
          "grt_behindtheback000000", listed, alice.tenant_id, bob.user_id, listed)
    assert await alice_finds() == ["listed.txt"]
    query(cfg, "DELETE FROM dataset_grants WHERE id = ?", "grt_behindtheback000000")
    assert await alice_finds() == []
    assert sorted(await found(client, bob.headers, "zebra", mode="lexical")) == ["listed.txt", "private.txt", "restricted.txt"]


async def test_allow_list_keys_search_only_their_datasets(client, alice, service):
    admin = await admin_headers(client)
    one = await create_dataset(client, alice.headers, name="one")
    two = await create_dataset(client, alice.headers, name="two")
    await publish(client, service, admin, alice.headers, one["dataset_id"], {"one.txt": "okapi one"})
    await publish(client, service, admin, alice.headers, two["dataset_id"], {"two.txt": "okapi two"})
    key = (await create_key(client, alice.headers, ["search:query"], dataset_access_mode="allow_list",
                            dataset_ids=[one["dataset_id"]]))["key"]
    headers = {"X-API-Key": key}
    assert await found(client, headers, "okapi") == ["one.txt"]
    assert (await search(client, headers, "okapi", dataset_ids=[two["dataset_id"]])).status_code == 404
    assert sorted(await found(client, alice.headers, "okapi")) == ["one.txt", "two.txt"]
    no_scope = (await create_key(client, alice.headers, ["datasets:read"]))["key"]
    r = await search(client, {"X-API-Key": no_scope}, "okapi")
    assert r.status_code == 403 and error_of(r)["details"]["required_scope"] == "search:query"
    assert (await client.post("/v1/search", json={"query": "okapi"})).status_code == 401
