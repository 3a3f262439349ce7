"""Webhook endpoints: CRUD under keys:write, the secret shown once and sealed at rest,
rotation, tenant isolation, bad input, refused targets, and events in the outbox."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import create_dataset, create_key, error_of, make_config
from tests.rawdb import dump, query


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    # Endpoints here point at loopback: allowed, as a private network would be.
    return make_config(tmp_path / "data", **{"webhooks.allow_private_targets": True})


HOOK_URL = "http://127.0.0.1:9/hook"  # nothing listens: these tests only read what was queued


async def create_hook(client, headers, **fields):
    r = await client.post("/v1/webhooks", headers=headers, json={"url": HOOK_URL, "events": ["*"], **fields})
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def test_create_shows_the_secret_once_and_seals_it(client, alice, cfg):
    data = await create_hook(client, alice.headers, description="ops")
    assert data["webhook_id"].startswith("wh_") and data["status"] == "enabled"
    assert data["secret"].startswith("whsec_") and len(base64.b64decode(data["secret"][6:])) == 24
    assert data["url"] == HOOK_URL and data["events"] == ["*"] and data["description"] == "ops"
    one = (await client.get(f"/v1/webhooks/{data['webhook_id']}", headers=alice.headers)).json()["data"]
    assert "secret" not in one and one["status"] == "enabled" and one["failing_since"] is None
    listed = (await client.get("/v1/webhooks", headers=alice.headers)).json()["data"]
    assert [h["webhook_id"] for h in listed["webhooks"]] == [data["webhook_id"]] and "secret" not in listed["webhooks"][0]
    text = dump(cfg)
    assert data["secret"] not in text and data["secret"][6:] not in text
    (sealed,) = query(cfg, "SELECT secret_sealed FROM webhooks WHERE id = ?", data["webhook_id"])[0]
    assert base64.b64decode(data["secret"][6:]) not in bytes(sealed)


async def test_update_and_delete(client, alice):
    hook = await create_hook(client, alice.headers)
    path = f"/v1/webhooks/{hook['webhook_id']}"
    r = await client.patch(path, headers=alice.headers, json={"events": ["dataset.updated", "object.uploaded"], "status": "disabled"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["events"] == ["dataset.updated", "object.uploaded"]
    assert r.json()["data"]["status"] == "disabled" and r.json()["data"]["disabled_reason"] == "manual"
    r = await client.patch(path, headers=alice.headers, json={"status": "enabled"})
    assert r.json()["data"]["status"] == "enabled" and r.json()["data"]["disabled_reason"] is None
    assert (await client.delete(path, headers=alice.headers)).status_code == 200
    assert (await client.get(path, headers=alice.headers)).status_code == 404


async def test_rotation_returns_a_new_secret_and_keeps_the_old_for_a_day(client, alice):
    hook = await create_hook(client, alice.headers)
    r = await client.post(f"/v1/webhooks/{hook['webhook_id']}/rotate-secret", headers=alice.headers)
    assert r.status_code == 200, r.text
    rotated = r.json()["data"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    assert rotated["previous_secret_expires_at"] is not None


async def test_another_tenants_webhook_is_not_found(client, alice, bob):
    hook = await create_hook(client, alice.headers)
    path = f"/v1/webhooks/{hook['webhook_id']}"
    for method, url, body in [
        ("GET", path, None), ("PATCH", path, {"description": "x"}), ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None), ("GET", f"{path}/deliveries", None),
        ("POST", f"{path}/deliveries/dlv_nothing/retry", None),
    ]:
        r = await client.request(method, url, headers=bob.headers, json=body)
        assert r.status_code == 404, (method, url, r.text)
        assert error_of(r)["code"] == "not_found"
    assert (await client.get("/v1/webhooks", headers=bob.headers)).json()["data"]["webhooks"] == []
    assert (await client.get(path, headers=alice.headers)).status_code == 200


async def test_keys_write_scope_is_required(client, alice):
    key = await create_key(client, alice.headers, ["datasets:read", "datasets:write"])
    r = await client.post("/v1/webhooks", headers={"X-API-Key": key["key"]}, json={"url": HOOK_URL, "events": ["*"]})
    assert r.status_code == 403 and error_of(r)["details"]["required_scope"] == "keys:write"
    key = await create_key(client, alice.headers, ["keys:write"])
    r = await client.post("/v1/webhooks", headers={"X-API-Key": key["key"]}, json={"url": HOOK_URL, "events": ["*"]})
    assert r.status_code == 201


@pytest.mark.parametrize(("body", "field"), [
    ({"events": ["*"]}, "url"),
    ({"url": HOOK_URL}, "events"),
    ({"url": HOOK_URL, "events": []}, "events"),
    ({"url": HOOK_URL, "events": ["object.exploded"]}, "events"),
    ({"url": HOOK_URL, "events": ["*", "object.uploaded"]}, "events"),
    ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
    ({"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}, "url"),
    ({"url": "not a url", "events": ["*"]}, "url"),
    ({"url": HOOK_URL, "events": "*"}, "events"),
    ({"url": HOOK_URL, "events": ["*"], "colour": "red"}, "colour"),
])
async def test_bad_bodies_are_400_naming_the_field(client, alice, body, field):
    r = await client.post("/v1/webhooks", headers=alice.headers, json=body)
    assert r.status_code == 400, r.text
    assert field in error_of(r)["details"]["fields"]


async def test_bad_patch_is_400(client, alice):
    hook = await create_hook(client, alice.headers)
    r = await client.patch(f"/v1/webhooks/{hook['webhook_id']}", headers=alice.headers, json={"status": "paused"})
    assert r.status_code == 400 and "status" in error_of(r)["details"]["fields"]


async def test_a_change_queues_one_delivery_per_subscribed_endpoint(client, alice, bob, cfg):
    """dataset.updated is written with the change: the subscribed endpoints get a delivery,
    the one that subscribes to other events and another tenant's get none."""
    everything = await create_hook(client, alice.headers)
    datasets_only = await create_hook(client, alice.headers, events=["dataset.updated"])
    uploads_only = await create_hook(client, alice.headers, events=["object.uploaded"])
    bobs = await create_hook(client, bob.headers)
    ds = await create_dataset(client, alice.headers)
    r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers, json={"description": "new words"})
    assert r.status_code == 200, r.text
    for hook, expected in [(everything, 1), (datasets_only, 1), (uploads_only, 0), (bobs, 0)]:
        page = (await client.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=(bob if hook is bobs else alice).headers)).json()
        deliveries = page["data"]["deliveries"]
        assert len(deliveries) == expected, hook
        if expected:
            assert deliveries[0]["event_type"] == "dataset.updated" and deliveries[0]["event_id"].startswith("evt_")
    events = query(cfg, "SELECT type, body FROM webhook_events")
    assert len(events) == 1 and events[0][0] == "dataset.updated"
    assert b'"changed":["description"]' in bytes(events[0][1])
