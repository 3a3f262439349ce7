"""API keys: shown once, hashed at rest, scopes and dataset access enforced, revocation."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from engine.ids import utcnow
from tests.conftest import create_dataset, create_key, error_of
from tests.rawdb import dump


async def test_create_returns_the_key_once(client, alice):
    data = await create_key(client, alice.headers, ["datasets:read"])
    assert re.fullmatch(r"ipto_[a-z0-9]{8}_[A-Za-z0-9]{40}", data["key"])
    assert data["key"].split("_")[1] == data["prefix"]
    assert data["api_key_id"].startswith("key_")
    assert data["scopes"] == ["datasets:read"]
    assert data["dataset_access_mode"] == "all_available" and data["dataset_ids"] == []
    assert data["last_used_at"] is None and data["revoked_at"] is None
    listed = (await client.get("/v1/api-keys", headers=alice.headers)).json()["data"]
    assert [k["api_key_id"] for k in listed["api_keys"]] == [data["api_key_id"]]
    assert "key" not in listed["api_keys"][0]
    one = (await client.get(f"/v1/api-keys/{data['api_key_id']}", headers=alice.headers)).json()["data"]
    assert "key" not in one and one["prefix"] == data["prefix"]


async def test_secret_is_stored_only_as_a_hash(client, alice, cfg):
    data = await create_key(client, alice.headers, ["datasets:read"])
    secret = data["key"].split("_")[2]
    text = dump(cfg)
    assert secret not in text
    assert data["prefix"] in text


async def test_key_authenticates_and_me_shows_its_scopes(client, alice):
    data = await create_key(client, alice.headers, ["datasets:read", "objects:write"])
    me = (await client.get("/v1/me", headers={"X-API-Key": data["key"]})).json()["data"]
    assert sorted(me["scopes"]) == ["datasets:read", "objects:write"]
    assert me["auth"] == {"kind": "api_key", "api_key_id": data["api_key_id"]}
    assert me["tenant"]["tenant_id"] == alice.tenant_id


async def test_last_used_at_is_kept(client, alice):
    data = await create_key(client, alice.headers, ["datasets:read"])
    await client.get("/v1/datasets", headers={"X-API-Key": data["key"]})
    key = (await client.get(f"/v1/api-keys/{data['api_key_id']}", headers=alice.headers)).json()["data"]
    assert key["last_used_at"] is not None


async def test_tampered_secret_is_refused(client, alice):
    data = await create_key(client, alice.headers, ["datasets:read"])
    bad = data["key"][:-1] + ("A" if data["key"][-1] != "A" else "B")
    r = await client.get("/v1/datasets", headers={"X-API-Key": bad})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("scopes", "method", "path", "body"),
    [
        (["datasets:read"], "POST", "/v1/datasets", {"name": "x"}),
        (["datasets:write"], "GET", "/v1/datasets", None),
        (["datasets:read"], "POST", "/v1/api-keys", {"name": "x", "scopes": ["datasets:read"]}),
        (["datasets:read"], "GET", "/v1/api-keys", None),
        (["datasets:read"], "GET", "/v1/catalog/datasets", None),
    ],
)
async def test_scopes_are_enforced(client, alice, scopes, method, path, body):
    key = (await create_key(client, alice.headers, scopes))["key"]
    r = await client.request(method, path, headers={"X-API-Key": key}, json=body)
    assert r.status_code == 403
    err = error_of(r)
    assert err["code"] == "forbidden" and err["details"]["required_scope"]


async def test_dataset_scoped_endpoints_need_scope_too(client, alice):
    ds = await create_dataset(client, alice.headers)
    key = (await create_key(client, alice.headers, ["datasets:read"]))["key"]
    h = {"X-API-Key": key}
    assert (await client.get(f"/v1/datasets/{ds['dataset_id']}", headers=h)).status_code == 200
    assert (await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=h, json={"name": "n"})).status_code == 403
    assert (await client.delete(f"/v1/datasets/{ds['dataset_id']}", headers=h)).status_code == 403


async def test_tenant_session_cannot_mint_admin_keys(client, alice):
    r = await client.post("/v1/api-keys", headers=alice.headers, json={"name": "x", "scopes": ["admin:*"]})
    assert r.status_code == 403


async def test_key_cannot_mint_broader_key(client, alice):
    key = (await create_key(client, alice.headers, ["keys:write", "datasets:read"]))["key"]
    r = await client.post("/v1/api-keys", headers={"X-API-Key": key}, json={"name": "x", "scopes": ["datasets:write"]})
    assert r.status_code == 403
    r = await client.post("/v1/api-keys", headers={"X-API-Key": key}, json={"name": "x", "scopes": ["datasets:read"]})
    assert r.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["datasets:fly"]}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x"}, "scopes"),
        ({"scopes": ["datasets:read"]}, "name"),
        ({"name": "x", "scopes": ["datasets:read"], "dataset_access_mode": "some"}, "dataset_access_mode"),
        ({"name": "x", "scopes": ["datasets:read"], "dataset_access_mode": "allow_list", "dataset_ids": ["dset_nope"]}, "dataset_ids"),
        ({"name": "x", "scopes": ["datasets:read"], "dataset_ids": "dset_x"}, "dataset_ids"),
    ],
)
async def test_create_rejects_bad_fields(client, alice, body, field):
    r = await client.post("/v1/api-keys", headers=alice.headers, json=body)
    assert r.status_code == 400
    assert field in error_of(r)["details"]["fields"]


async def test_allow_list_key_sees_only_its_datasets(client, alice):
    allowed = await create_dataset(client, alice.headers, name="allowed")
    other = await create_dataset(client, alice.headers, name="other")
    key = (await create_key(client, alice.headers, ["datasets:read", "datasets:write"],
                            dataset_access_mode="allow_list", dataset_ids=[allowed["dataset_id"]]))["key"]
    h = {"X-API-Key": key}
    listed = (await client.get("/v1/datasets", headers=h)).json()["data"]
    assert [d["dataset_id"] for d in listed["datasets"]] == [allowed["dataset_id"]]
    assert listed["total"] == 1
    assert (await client.get(f"/v1/datasets/{allowed['dataset_id']}", headers=h)).status_code == 200
    for method, body in [("GET", None), ("PATCH", {"name": "n"}), ("DELETE", None)]:
        r = await client.request(method, f"/v1/datasets/{other['dataset_id']}", headers=h, json=body)
        assert r.status_code == 403, method
        assert error_of(r)["code"] == "forbidden"
    r = await client.post("/v1/datasets", headers=h, json={"name": "new"})
    assert r.status_code == 403


async def test_update_changes_name_and_access(client, alice):
    ds = await create_dataset(client, alice.headers)
    key = await create_key(client, alice.headers, ["datasets:read"])
    r = await client.patch(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers,
                           json={"name": "renamed", "dataset_access_mode": "allow_list", "dataset_ids": [ds["dataset_id"]]})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["name"] == "renamed" and data["dataset_ids"] == [ds["dataset_id"]]
    other = await create_dataset(client, alice.headers)
    r = await client.get(f"/v1/datasets/{other['dataset_id']}", headers={"X-API-Key": key["key"]})
    assert r.status_code == 403
    r = await client.patch(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers, json={"scopes": ["admin:*"]})
    assert r.status_code == 400
    r = await client.patch(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers, json={"dataset_access_mode": "all_available"})
    assert r.json()["data"]["dataset_ids"] == []
    assert (await client.get(f"/v1/datasets/{other['dataset_id']}", headers={"X-API-Key": key["key"]})).status_code == 200


async def test_revoked_key_stops_working_at_once(client, alice):
    key = await create_key(client, alice.headers, ["datasets:read"])
    h = {"X-API-Key": key["key"]}
    assert (await client.get("/v1/datasets", headers=h)).status_code == 200
    r = await client.delete(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["data"]["revoked_at"] is not None
    assert (await client.get("/v1/datasets", headers=h)).status_code == 401
    r = await client.patch(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers, json={"name": "again"})
    assert r.status_code == 409


async def test_another_tenants_key_is_not_found(client, alice, bob):
    key = await create_key(client, alice.headers, ["datasets:read"])
    kid = key["api_key_id"]
    for method, body in [("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)]:
        r = await client.request(method, f"/v1/api-keys/{kid}", headers=bob.headers, json=body)
        assert r.status_code == 404, method
    assert (await client.get("/v1/api-keys", headers=bob.headers)).json()["data"]["api_keys"] == []
    assert (await client.get("/v1/datasets", headers={"X-API-Key": key["key"]})).status_code == 200


async def test_allow_list_cannot_name_another_tenants_dataset(client, alice, bob):
    theirs = await create_dataset(client, bob.headers)
    r = await client.post("/v1/api-keys", headers=alice.headers, json={
        "name": "x", "scopes": ["datasets:read"], "dataset_access_mode": "allow_list", "dataset_ids": [theirs["dataset_id"]]})
    assert r.status_code == 400


async def test_last_used_at_is_not_rewritten_on_every_request(client, alice, service, monkeypatch):
    key = await create_key(client, alice.headers, ["datasets:read"])
    await client.get("/v1/datasets", headers={"X-API-Key": key["key"]})
    first = (await client.get(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers)).json()["data"]["last_used_at"]
    await client.get("/v1/datasets", headers={"X-API-Key": key["key"]})
    assert (await client.get(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers)).json()["data"]["last_used_at"] == first
    later = utcnow() + timedelta(hours=1)
    monkeypatch.setattr(service.services.identity, "now", lambda: later)
    await client.get("/v1/datasets", headers={"X-API-Key": key["key"]})
    monkeypatch.undo()
    third = (await client.get(f"/v1/api-keys/{key['api_key_id']}", headers=alice.headers)).json()["data"]["last_used_at"]
    assert third > first
