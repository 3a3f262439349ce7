"""Who may manage API keys (issue 17, point 6): a session manages every key of its tenant;
a key only sees and manages keys whose scopes are all its own and whose datasets are
within its own. Anything else answers 404, as if it did not exist."""

from __future__ import annotations

from tests.conftest import create_dataset, create_key


async def _ids(client, headers) -> set[str]:
    r = await client.get("/v1/api-keys", headers=headers, params={"limit": 100})
    assert r.status_code == 200, r.text
    return {k["api_key_id"] for k in r.json()["data"]["api_keys"]}


async def test_an_allow_list_key_sees_and_manages_only_keys_within_its_own(client, alice):
    a = (await create_dataset(client, alice.headers, name="A"))["dataset_id"]
    b = (await create_dataset(client, alice.headers, name="B"))["dataset_id"]
    broad = await create_key(client, alice.headers, ["datasets:read", "datasets:write", "keys:write"])
    other_dataset = await create_key(client, alice.headers, ["datasets:read"], dataset_access_mode="allow_list", dataset_ids=[b])
    both = await create_key(client, alice.headers, ["datasets:read"], dataset_access_mode="allow_list", dataset_ids=[a, b])
    more_scopes = await create_key(client, alice.headers, ["datasets:read", "objects:write"], dataset_access_mode="allow_list",
                                   dataset_ids=[a])
    narrow = await create_key(client, alice.headers, ["datasets:read", "keys:write"], dataset_access_mode="allow_list",
                              dataset_ids=[a])
    headers = {"X-API-Key": narrow["key"]}
    inside = await create_key(client, headers, ["datasets:read"], dataset_access_mode="allow_list", dataset_ids=[a])
    hidden = [broad, other_dataset, both, more_scopes]
    assert await _ids(client, headers) == {narrow["api_key_id"], inside["api_key_id"]}
    for key in hidden:
        kid = key["api_key_id"]
        assert (await client.get(f"/v1/api-keys/{kid}", headers=headers)).status_code == 404
        assert (await client.patch(f"/v1/api-keys/{kid}", headers=headers, json={"name": "taken"})).status_code == 404
        assert (await client.delete(f"/v1/api-keys/{kid}", headers=headers)).status_code == 404
        # The broader key is untouched and still works.
        seen = (await client.get(f"/v1/api-keys/{kid}", headers=alice.headers)).json()["data"]
        assert seen["revoked_at"] is None and seen["name"] == "k"
        assert (await client.get("/v1/me", headers={"X-API-Key": key["key"]})).status_code == 200
    # What is within its own it manages.
    r = await client.patch(f"/v1/api-keys/{inside['api_key_id']}", headers=headers, json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["data"]["name"] == "renamed"
    r = await client.delete(f"/v1/api-keys/{inside['api_key_id']}", headers=headers)
    assert r.status_code == 200 and r.json()["data"]["revoked_at"] is not None
    # The session sees and manages them all.
    assert await _ids(client, alice.headers) >= {k["api_key_id"] for k in [*hidden, narrow, inside]}


async def test_an_all_datasets_key_with_fewer_scopes_cannot_touch_a_broader_key(client, alice):
    broad = await create_key(client, alice.headers, ["datasets:read", "datasets:write", "objects:write", "keys:write"])
    keys_only = await create_key(client, alice.headers, ["keys:write"])
    headers = {"X-API-Key": keys_only["key"]}
    assert await _ids(client, headers) == {keys_only["api_key_id"]}
    assert (await client.delete(f"/v1/api-keys/{broad['api_key_id']}", headers=headers)).status_code == 404
    assert (await client.get(f"/v1/api-keys/{broad['api_key_id']}", headers=alice.headers)).json()["data"]["revoked_at"] is None
    # A broader all-datasets key manages the narrower ones, allow-list keys included.
    ds = (await create_dataset(client, alice.headers, name="A"))["dataset_id"]
    listed = await create_key(client, alice.headers, ["datasets:read"], dataset_access_mode="allow_list", dataset_ids=[ds])
    ids = await _ids(client, {"X-API-Key": broad["key"]})
    assert {broad["api_key_id"], keys_only["api_key_id"], listed["api_key_id"]} <= ids


async def test_pages_of_a_narrow_key_skip_what_it_may_not_see(client, alice):
    """Hidden keys between visible ones neither shorten pages nor end the list early."""
    narrow = await create_key(client, alice.headers, ["datasets:read", "keys:write"])
    headers = {"X-API-Key": narrow["key"]}
    visible = [narrow["api_key_id"]]
    for i in range(6):
        await create_key(client, alice.headers, ["datasets:read", "datasets:write"])  # hidden
        if i % 2 == 0:
            visible.append((await create_key(client, headers, ["datasets:read"]))["api_key_id"])
    seen, cursor = [], None
    while True:
        r = await client.get("/v1/api-keys", headers=headers, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        data = r.json()["data"]
        assert len(data["api_keys"]) == 2 or not data["has_more"]
        seen += [k["api_key_id"] for k in data["api_keys"]]
        if not data["has_more"]:
            break
        cursor = data["next_cursor"]
    assert seen == list(reversed(visible))
