"""Idempotency-Key on POST: replay, reuse with another body, in-progress, retention."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from engine.idempotency import fingerprint
from engine.ids import utcnow
from tests.conftest import error_of
from tests.rawdb import query


async def test_same_key_replays_the_first_response(client, alice):
    h = {**alice.headers, "Idempotency-Key": "create-1"}
    first = await client.post("/v1/datasets", headers=h, json={"name": "once"})
    second = await client.post("/v1/datasets", headers=h, json={"name": "once"})
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.json() == first.json()
    listed = (await client.get("/v1/datasets", headers=alice.headers)).json()["data"]
    assert listed["total"] == 1


async def test_key_order_in_json_does_not_matter(client, alice):
    h = {**alice.headers, "Idempotency-Key": "k-order", "Content-Type": "application/json"}
    a = await client.post("/v1/datasets", headers=h, content=b'{"name": "x", "visibility": "listed"}')
    b = await client.post("/v1/datasets", headers=h, content=b'{"visibility":"listed","name":"x"}')
    assert b.headers.get("Idempotent-Replayed") == "true"
    assert a.json()["data"]["dataset_id"] == b.json()["data"]["dataset_id"]


async def test_reused_key_with_other_body_is_422(client, alice):
    h = {**alice.headers, "Idempotency-Key": "create-2"}
    await client.post("/v1/datasets", headers=h, json={"name": "one"})
    r = await client.post("/v1/datasets", headers=h, json={"name": "two"})
    assert r.status_code == 422
    assert error_of(r)["code"] == "idempotency_key_reused"
    r = await client.post("/v1/api-keys", headers=h, json={"name": "one", "scopes": ["datasets:read"]})
    assert r.status_code == 422


async def test_errors_are_replayed_too(client, alice):
    h = {**alice.headers, "Idempotency-Key": "bad-1"}
    first = await client.post("/v1/datasets", headers=h, json={"name": "x", "visibility": "nope"})
    second = await client.post("/v1/datasets", headers=h, json={"name": "x", "visibility": "nope"})
    assert first.status_code == second.status_code == 400
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_keys_are_scoped_per_principal(client, alice, bob):
    a = await client.post("/v1/datasets", headers={**alice.headers, "Idempotency-Key": "shared"}, json={"name": "x"})
    b = await client.post("/v1/datasets", headers={**bob.headers, "Idempotency-Key": "shared"}, json={"name": "x"})
    assert b.status_code == 201 and "Idempotent-Replayed" not in b.headers
    assert a.json()["data"]["dataset_id"] != b.json()["data"]["dataset_id"]


async def test_request_still_running_is_409(client, alice, service):
    idem = service.services.idempotency
    body = b'{"name": "slow"}'
    fp = fingerprint("POST", "/v1/datasets", body)
    assert await idem.begin(f"user:{alice.user_id}", "busy", fp) is None  # a first request holds the key
    r = await client.post(
        "/v1/datasets", headers={**alice.headers, "Idempotency-Key": "busy", "Content-Type": "application/json"}, content=body
    )
    assert r.status_code == 409
    assert error_of(r)["code"] == "idempotency_in_progress"


async def test_concurrent_duplicates_create_one_resource(client, alice, nursery):
    import trio

    results = []

    async def post() -> None:
        results.append(await client.post("/v1/datasets", headers={**alice.headers, "Idempotency-Key": "race"}, json={"name": "r"}))

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(post)
    assert {r.status_code for r in results} <= {201, 409}
    assert (await client.get("/v1/datasets", headers=alice.headers)).json()["data"]["total"] == 1


async def test_signup_is_idempotent_without_auth(client):
    body = {"email": "idem@example.com", "password": "long enough pw"}
    a = await client.post("/v1/auth/signup", headers={"Idempotency-Key": "su-1"}, json=body)
    b = await client.post("/v1/auth/signup", headers={"Idempotency-Key": "su-1"}, json=body)
    assert a.status_code == b.status_code == 201
    assert b.headers["Idempotent-Replayed"] == "true"


async def test_stored_responses_do_not_hold_secrets_in_clear(client, alice, cfg):
    r = await client.post("/v1/api-keys", headers={**alice.headers, "Idempotency-Key": "key-1"},
                          json={"name": "k", "scopes": ["datasets:read"]})
    secret = r.json()["data"]["key"].split("_")[2]
    rows = query(cfg, "SELECT key, response FROM idempotency_keys")
    assert rows
    assert all(secret.encode() not in response for _, response in rows)
    assert all(key != "key-1" for key, _ in rows)
    assert hashlib.sha256(b"key-1").hexdigest() in {key for key, _ in rows}
    replay = await client.post("/v1/api-keys", headers={**alice.headers, "Idempotency-Key": "key-1"},
                               json={"name": "k", "scopes": ["datasets:read"]})
    assert replay.json()["data"]["key"] == r.json()["data"]["key"]


async def test_bad_idempotency_key_header_is_400(client, alice):
    r = await client.post("/v1/datasets", headers={**alice.headers, "Idempotency-Key": "x" * 300}, json={"name": "x"})
    assert r.status_code == 400


async def test_records_expire_after_retention_and_are_purged(client, alice, service, monkeypatch):
    h = {**alice.headers, "Idempotency-Key": "old"}
    first = (await client.post("/v1/datasets", headers=h, json={"name": "x"})).json()["data"]["dataset_id"]
    idem = service.services.idempotency
    later = utcnow() + timedelta(seconds=service.services.cfg.idempotency.retention_seconds + 1)
    monkeypatch.setattr(idem, "now", lambda: later)
    # after 24 h the key is free again: a new request runs
    again = await client.post("/v1/datasets", headers=h, json={"name": "x"})
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["data"]["dataset_id"] != first
    monkeypatch.setattr(idem, "now", lambda: later + timedelta(seconds=service.services.cfg.idempotency.retention_seconds + 1))
    assert await idem.purge() >= 1
