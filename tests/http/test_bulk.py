"""Bulk operations (API.md "Bulk operations"): batch initiate, confirm and delete, and one
change to many datasets. Each item stands alone; the batch is one request, one
Idempotency-Key, and one message to each dataset's actor.

Runs on both stores (``IPTO_TEST_BACKEND=postgres-s3`` for PostgreSQL and S3).
"""

from __future__ import annotations

import os
from datetime import timedelta

import orjson
import pytest

from engine.bulk import CreateObjects, DeleteObjects, FinishUploads
from tests.conftest import S3, create_dataset, create_key, error_of, make_config, signup
from tests.http.uploads_helpers import MULTIPART, MiB, sha
from tests.rawdb import query


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    # Webhook endpoints on loopback are allowed (the outbox test below only reads what was queued).
    return make_config(tmp_path / "data", **MULTIPART, **{"webhooks.allow_private_targets": True})


@pytest.fixture(name="dataset")
async def _dataset(client, alice):
    return await create_dataset(client, alice.headers, name="Batch set")


def _file(i: int, data: bytes, **over) -> dict:
    return {"filename": f"scan-{i:04d}.txt", "content_type": "text/plain", "size_bytes": len(data),
            "checksum_sha256": sha(data), **over}


async def _initiate(client, headers, dataset_id, files, **kw):
    return await client.post(f"/v1/datasets/{dataset_id}/objects/upload/batch", headers=headers, json={"files": files}, **kw)


async def _confirm(client, headers, ids, **kw):
    return await client.post("/v1/objects/confirm/batch", headers=headers, json={"object_ids": ids}, **kw)


async def _delete(client, headers, ids, **kw):
    return await client.post("/v1/objects/delete/batch", headers=headers, json={"object_ids": ids}, **kw)


class AskSpy:
    """Counts the messages each dataset's actor is asked, by message type."""

    def __init__(self, monkeypatch, service) -> None:
        self.asked: list[tuple[str, str]] = []
        actors = service.services.actors
        original = actors.ask

        async def ask(dataset_id, message, timeout=None):
            self.asked.append((dataset_id, type(message).__name__))
            return await original(dataset_id, message, timeout)

        monkeypatch.setattr(actors, "ask", ask)

    def count(self, name: str) -> int:
        return sum(1 for _, n in self.asked if n == name)


async def _dataset_row(client, headers, dataset_id) -> dict:
    return (await client.get(f"/v1/datasets/{dataset_id}", headers=headers)).json()["data"]


async def test_a_batch_of_uploads_is_one_message_each_way_and_counts_every_object(client, alice, dataset, service, monkeypatch):
    bodies = [f"invoice {i}\n".encode() * (i + 1) for i in range(40)]
    spy = AskSpy(monkeypatch, service)
    r = await _initiate(client, alice.headers, dataset["dataset_id"], [_file(i, b) for i, b in enumerate(bodies)])
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert [x["index"] for x in results] == list(range(40)) and all(x["ok"] for x in results)
    ups = [x["upload"] for x in results]
    assert set(ups[0]) == {"upload_id", "object_id", "blob_id", "review_state", "upload_strategy", "upload_url", "expires_at"}
    assert len({u["object_id"] for u in ups}) == 40 and all(u["upload_strategy"] == "single_part" for u in ups)
    assert spy.count(CreateObjects.__name__) == 1 and len(spy.asked) == 1  # one message for the 40

    for up, body in zip(ups, bodies, strict=True):
        assert (await client.put(up["upload_url"], content=body)).status_code == 200
    spy.asked.clear()
    r = await _confirm(client, alice.headers, [u["object_id"] for u in ups])
    assert r.status_code == 200, r.text
    confirmed = r.json()["data"]["results"]
    assert all(x["ok"] for x in confirmed), confirmed
    assert [x["object_id"] for x in confirmed] == [u["object_id"] for u in ups]
    assert {x["data"]["status"] for x in confirmed} == {"uploaded"}
    assert [x["data"]["checksum_sha256"] for x in confirmed] == [sha(b) for b in bodies]
    assert spy.count(FinishUploads.__name__) == 1 and len(spy.asked) == 1
    ds = await _dataset_row(client, alice.headers, dataset["dataset_id"])
    assert ds["object_count"] == 40 and ds["total_bytes"] == sum(map(len, bodies)) and ds["status"] == "ingesting"
    obj = (await client.get(f"/v1/objects/{ups[7]['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "uploaded" and obj["review_state"] == "staged" and obj["original_filename"] == "scan-0007.txt"
    dl = (await client.get(f"/v1/objects/{ups[7]['object_id']}/download-url", headers=alice.headers)).json()["data"]
    assert (await client.get(dl["download_url"])).content == bodies[7]

    again = (await _confirm(client, alice.headers, [ups[0]["object_id"]])).json()["data"]["results"]
    assert again[0]["ok"] and again[0]["data"]["status"] == "uploaded"  # confirming twice is harmless
    assert (await _dataset_row(client, alice.headers, dataset["dataset_id"]))["object_count"] == 40


async def test_initiate_items_stand_alone(client, alice, dataset, cfg):
    good = b"fine bytes"
    files = [
        _file(0, good),
        {"content_type": "text/plain", "size_bytes": 3},  # no filename
        _file(2, b"x", content_type="audio/mpeg"),  # a document dataset takes no audio
        _file(3, b"x", size_bytes=cfg.uploads.max_size_bytes + 1),
        _file(4, b"x", checksum_sha256="abc"),
        _file(0, good),  # the same file again
        "not an object",
        _file(7, b"y", surprise=True),
        _file(8, b"z" * (7 * MiB), size_bytes=7 * MiB),  # multipart
    ]
    r = await _initiate(client, alice.headers, dataset["dataset_id"], files)
    assert r.status_code == 200, r.text
    res = r.json()["data"]["results"]
    assert [x["ok"] for x in res] == [True, False, False, False, False, False, False, False, True]
    codes = {x["index"]: (x["error"]["code"], x["error"]["details"]) for x in res if not x["ok"]}
    assert codes[1] == ("invalid_request", {"fields": {"filename": "is required"}})
    assert codes[2][0] == "invalid_request" and "content_type" in codes[2][1]["fields"]
    assert codes[3][0] == "payload_too_large"
    assert codes[4] == ("invalid_request", {"fields": {"checksum_sha256": "must be 64 hex characters"}})
    assert codes[5] == ("invalid_request", {"duplicate_of": 0})
    assert codes[6][0] == "invalid_request"
    assert codes[7] == ("invalid_request", {"fields": {"surprise": "unknown field"}})
    assert set(res[1]) == {"index", "ok", "error"} and set(res[1]["error"]) == {"code", "message", "details"}
    big = res[8]["upload"]
    assert big["upload_strategy"] == "multipart" and len(big["parts"]) == 2 and big["upload_url"] is None
    listed = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/objects", headers=alice.headers)).json()["data"]
    assert sorted(o["object_id"] for o in listed["objects"]) == sorted([res[0]["upload"]["object_id"], big["object_id"]])


@pytest.mark.parametrize("files", [[], [_file(i, b"x") for i in range(1001)], "nope", None])
async def test_initiate_batch_size_and_shape_are_checked(client, alice, dataset, files):
    r = await _initiate(client, alice.headers, dataset["dataset_id"], files)
    assert r.status_code == 400
    assert "files" in error_of(r)["details"]["fields"]


async def test_initiate_into_a_wrong_dataset_fails_the_request(client, alice, bob, dataset):
    r = await _initiate(client, bob.headers, dataset["dataset_id"], [_file(0, b"x")])  # alice's dataset
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = await _initiate(client, alice.headers, "dset_nope", [_file(0, b"x")])
    assert r.status_code == 404
    await client.patch(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers, json={"status": "paused"})
    r = await _initiate(client, alice.headers, dataset["dataset_id"], [_file(0, b"x")])
    assert r.status_code == 409 and error_of(r)["details"] == {"current_status": "paused"}
    listed = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/objects", headers=alice.headers)).json()["data"]
    assert listed["objects"] == []


async def test_confirm_items_stand_alone(client, alice, bob, dataset, service, cfg):
    bodies = [b"first body", b"second body", b"third body", b"fourth body"]
    ups = [x["upload"] for x in (await _initiate(client, alice.headers, dataset["dataset_id"],
                                                 [_file(i, b) for i, b in enumerate(bodies)])).json()["data"]["results"]]
    assert (await client.put(ups[0]["upload_url"], content=bodies[0])).status_code == 200
    wrong = b"SECOND BODY"  # same length, other bytes: the declared SHA-256 does not match
    if not S3:  # S3 itself refuses a PUT whose bytes do not match the signed checksum
        assert (await client.put(ups[1]["upload_url"], content=wrong)).status_code == 200
    # ups[2]: never PUT
    assert (await client.put(ups[3]["upload_url"], content=bodies[3])).status_code == 200
    bobs_ds = await create_dataset(client, bob.headers)
    bobs = (await _initiate(client, bob.headers, bobs_ds["dataset_id"], [_file(0, b"bob")])).json()["data"]["results"][0]["upload"]

    ids = [ups[0]["object_id"], ups[1]["object_id"], ups[2]["object_id"], "obj_nope", bobs["object_id"], ups[0]["object_id"],
           17, ups[3]["object_id"]]
    r = await _confirm(client, alice.headers, ids)
    assert r.status_code == 200, r.text
    res = r.json()["data"]["results"]
    assert [x["ok"] for x in res] == [True, False, False, False, False, False, False, True]
    assert [x["object_id"] for x in res] == ids
    errors = {x["index"]: x["error"] for x in res if not x["ok"]}
    if S3:
        assert errors[1]["code"] == "size_mismatch"  # nothing arrived
    else:
        assert errors[1]["code"] == "checksum_mismatch"
        assert errors[1]["details"] == {"expected_sha256": sha(bodies[1]), "computed_sha256": sha(wrong)}
    assert errors[2]["code"] == "size_mismatch" and errors[2]["details"]["received_size_bytes"] == 0
    assert errors[3]["code"] == "not_found" and errors[4] == errors[3]  # bob's object is not revealed
    assert errors[5]["code"] == "invalid_request" and errors[5]["details"] == {"duplicate_of": 0}
    assert errors[6]["code"] == "invalid_request"
    ds = await _dataset_row(client, alice.headers, dataset["dataset_id"])
    assert ds["object_count"] == 2 and ds["total_bytes"] == len(bodies[0]) + len(bodies[3])
    bob_obj = (await client.get(f"/v1/objects/{bobs['object_id']}", headers=bob.headers)).json()["data"]
    assert bob_obj["status"] == "pending_upload"  # untouched
    pending = (await client.get(f"/v1/objects/{ups[2]['object_id']}", headers=alice.headers)).json()["data"]
    assert pending["status"] == "pending_upload"

    # the failed one can still be fixed and confirmed on its own afterwards
    assert (await client.put(ups[2]["upload_url"], content=bodies[2])).status_code == 200
    r = await _confirm(client, alice.headers, [ups[2]["object_id"]])
    assert r.json()["data"]["results"][0]["ok"]


async def test_confirm_a_multipart_object_in_a_batch(client, alice, dataset):
    data = os.urandom(7 * MiB)
    small = b"small one"
    res = (await _initiate(client, alice.headers, dataset["dataset_id"],
                           [_file(0, data), _file(1, small)])).json()["data"]["results"]
    big, one = res[0]["upload"], res[1]["upload"]
    size = big["part_size_bytes"]
    for p in big["parts"]:
        n = p["part_number"]
        assert (await client.put(p["upload_url"], content=data[(n - 1) * size : n * size])).status_code == 200
    assert (await client.put(one["upload_url"], content=small)).status_code == 200
    r = await _confirm(client, alice.headers, [big["object_id"], one["object_id"]])
    res = r.json()["data"]["results"]
    assert all(x["ok"] for x in res), res
    assert res[0]["data"]["checksum_sha256"] == sha(data)


async def test_batch_limits_on_confirm_and_delete(client, alice):
    for route in ("/v1/objects/confirm/batch", "/v1/objects/delete/batch"):
        for ids in ([], [f"obj_{i}" for i in range(1001)], "obj_1", {"a": 1}):
            r = await client.post(route, headers=alice.headers, json={"object_ids": ids})
            assert r.status_code == 400, (route, ids)
            assert "object_ids" in error_of(r)["details"]["fields"]
        r = await client.post(route, headers=alice.headers, json={"object_ids": ["obj_1"], "extra": 1})
        assert r.status_code == 400
        r = await client.post(route, headers=alice.headers, content=b"{not json", )
        assert r.status_code == 400
        r = await client.post(route, headers=alice.headers, json={"object_ids": [f"obj_{i}" for i in range(1000)]})
        assert r.status_code == 200 and len(r.json()["data"]["results"]) == 1000  # the maximum is accepted


async def test_scopes_and_allow_list_keys(client, alice, dataset):
    other = await create_dataset(client, alice.headers, name="Other")
    reader = {"X-API-Key": (await create_key(client, alice.headers, ["datasets:read"]))["key"]}
    for r in (await _initiate(client, reader, dataset["dataset_id"], [_file(0, b"x")]),
              await _confirm(client, reader, ["obj_x"]), await _delete(client, reader, ["obj_x"]),
              await client.patch("/v1/datasets", headers=reader, json={"dataset_ids": [dataset["dataset_id"]],
                                                                        "set": {"description": "x"}})):
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden"

    mine = (await _initiate(client, alice.headers, dataset["dataset_id"], [_file(0, b"x")])).json()["data"]["results"][0]["upload"]
    theirs = (await _initiate(client, alice.headers, other["dataset_id"], [_file(0, b"y")])).json()["data"]["results"][0]["upload"]
    limited = {"X-API-Key": (await create_key(client, alice.headers, ["datasets:read", "datasets:write", "objects:write"],
                                              dataset_access_mode="allow_list", dataset_ids=[dataset["dataset_id"]]))["key"]}
    assert (await _initiate(client, limited, other["dataset_id"], [_file(0, b"x")])).status_code == 403
    res = (await _delete(client, limited, [mine["object_id"], theirs["object_id"]])).json()["data"]["results"]
    assert res[0]["ok"] and res[0]["data"]["status"] == "deleted"
    assert not res[1]["ok"] and res[1]["error"]["code"] == "forbidden"
    res = (await client.patch("/v1/datasets", headers=limited, json={
        "dataset_ids": [dataset["dataset_id"], other["dataset_id"]], "set": {"description": "limited"}})).json()["data"]["results"]
    assert res[0]["ok"] and not res[1]["ok"] and res[1]["error"]["code"] == "forbidden"


async def test_one_idempotency_key_for_the_whole_batch(client, alice, dataset):
    files = [_file(i, b"abc") for i in range(5)]
    headers = {**alice.headers, "Idempotency-Key": "batch-1"}
    first = await _initiate(client, headers, dataset["dataset_id"], files)
    second = await _initiate(client, headers, dataset["dataset_id"], files)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json()["data"] == first.json()["data"]
    listed = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/objects", headers=alice.headers)).json()["data"]
    assert len(listed["objects"]) == 5  # created once
    other = await _initiate(client, headers, dataset["dataset_id"], files[:4])
    assert other.status_code == 422 and error_of(other)["code"] == "idempotency_key_reused"

    ids = [x["upload"]["object_id"] for x in first.json()["data"]["results"]]
    for x in first.json()["data"]["results"]:
        await client.put(x["upload"]["upload_url"], content=b"abc")
    confirm_headers = {**alice.headers, "Idempotency-Key": "confirm-1"}
    c1 = await _confirm(client, confirm_headers, ids)
    c2 = await _confirm(client, confirm_headers, ids)
    assert c2.headers.get("Idempotent-Replayed") == "true" and c2.json()["data"] == c1.json()["data"]
    assert (await _dataset_row(client, alice.headers, dataset["dataset_id"]))["object_count"] == 5


async def test_a_replayed_batch_after_its_urls_expired_gets_fresh_urls(client, alice, dataset, service, monkeypatch):
    files = [_file(i, f"body {i}".encode()) for i in range(3)]
    headers = {**alice.headers, "Idempotency-Key": "batch-renew"}
    first = (await _initiate(client, headers, dataset["dataset_id"], files)).json()["data"]["results"]
    objects = service.services.objects
    real_now = objects.now
    later = real_now() + timedelta(seconds=service.services.cfg.uploads.url_ttl_seconds + 60)
    monkeypatch.setattr(objects, "now", lambda: later)
    again = await _initiate(client, headers, dataset["dataset_id"], files)
    assert again.headers.get("Idempotent-Replayed") == "true"
    renewed = again.json()["data"]["results"]
    assert [x["upload"]["object_id"] for x in renewed] == [x["upload"]["object_id"] for x in first]
    assert all(n["upload"]["expires_at"] > f["upload"]["expires_at"] for n, f in zip(renewed, first, strict=True))


async def test_delete_items_stand_alone(client, alice, bob, dataset, service, cfg):
    bodies = [b"keep me", b"delete me", b"delete me too"]
    ups = [x["upload"] for x in (await _initiate(client, alice.headers, dataset["dataset_id"],
                                                 [_file(i, b) for i, b in enumerate(bodies)])).json()["data"]["results"]]
    for up, body in zip(ups, bodies, strict=True):
        await client.put(up["upload_url"], content=body)
    await _confirm(client, alice.headers, [u["object_id"] for u in ups])
    pending = (await _initiate(client, alice.headers, dataset["dataset_id"], [_file(9, b"never sent")])).json()["data"]["results"][0]["upload"]
    bobs_ds = await create_dataset(client, bob.headers)
    bobs = (await _initiate(client, bob.headers, bobs_ds["dataset_id"], [_file(0, b"bob")])).json()["data"]["results"][0]["upload"]

    ids = [ups[1]["object_id"], ups[2]["object_id"], pending["object_id"], bobs["object_id"], "obj_nope", ups[1]["object_id"], ""]
    r = await _delete(client, alice.headers, ids)
    assert r.status_code == 200, r.text
    res = r.json()["data"]["results"]
    assert [x["ok"] for x in res] == [True, True, True, False, False, False, False]
    assert {x["data"]["status"] for x in res[:3]} == {"deleted"}
    assert res[3]["error"] == res[4]["error"] and res[3]["error"]["code"] == "not_found"
    assert res[5]["error"]["details"] == {"duplicate_of": 0} and res[6]["error"]["code"] == "invalid_request"
    ds = await _dataset_row(client, alice.headers, dataset["dataset_id"])
    assert ds["object_count"] == 1 and ds["total_bytes"] == len(bodies[0])
    assert not await service.services.objects.blobs.exists(ups[1]["blob_id"])
    assert await service.services.objects.blobs.exists(ups[0]["blob_id"])
    assert (await client.get(f"/v1/objects/{bobs['object_id']}", headers=bob.headers)).json()["data"]["status"] == "pending_upload"
    again = (await _delete(client, alice.headers, [ups[1]["object_id"]])).json()["data"]["results"]
    assert again[0]["ok"] and again[0]["data"]["status"] == "deleted"  # a tombstone, as a single DELETE answers
    assert (await _dataset_row(client, alice.headers, dataset["dataset_id"]))["object_count"] == 1


async def test_delete_is_one_message_per_dataset(client, alice, dataset, service, monkeypatch):
    other = await create_dataset(client, alice.headers, name="Second")
    a = [x["upload"]["object_id"] for x in (await _initiate(client, alice.headers, dataset["dataset_id"],
                                                            [_file(i, b"a") for i in range(6)])).json()["data"]["results"]]
    b = [x["upload"]["object_id"] for x in (await _initiate(client, alice.headers, other["dataset_id"],
                                                            [_file(i, b"b") for i in range(4)])).json()["data"]["results"]]
    spy = AskSpy(monkeypatch, service)
    res = (await _delete(client, alice.headers, [a[0], b[0], *a[1:], *b[1:]])).json()["data"]["results"]
    assert all(x["ok"] for x in res)
    assert sorted(spy.asked) == sorted([(dataset["dataset_id"], DeleteObjects.__name__), (other["dataset_id"], DeleteObjects.__name__)])


async def test_patch_many_datasets_items_stand_alone(client, alice, bob):
    a = await create_dataset(client, alice.headers, name="A")
    b = await create_dataset(client, alice.headers, name="B")
    archived = await create_dataset(client, alice.headers, name="C")
    await client.patch(f"/v1/datasets/{archived['dataset_id']}", headers=alice.headers, json={"status": "archived"})
    bobs = await create_dataset(client, bob.headers, name="Bob's")
    ids = [a["dataset_id"], b["dataset_id"], archived["dataset_id"], bobs["dataset_id"], "dset_nope", a["dataset_id"], 5]
    r = await client.patch("/v1/datasets", headers=alice.headers,
                           json={"dataset_ids": ids, "set": {"status": "paused", "description": "batch paused"}})
    assert r.status_code == 200, r.text
    res = r.json()["data"]["results"]
    assert [x["ok"] for x in res] == [True, True, False, False, False, False, False]
    assert [x["dataset_id"] for x in res] == ids
    assert res[0]["data"]["status"] == "paused" and res[0]["data"]["description"] == "batch paused"
    assert "current_price_micros" in res[0]["data"]
    assert res[2]["error"]["code"] == "conflict" and res[2]["error"]["details"]["current_status"] == "archived"
    assert res[3]["error"]["code"] == "not_found" and res[3]["error"] == res[4]["error"]
    assert res[5]["error"]["details"] == {"duplicate_of": 0} and res[6]["error"]["code"] == "invalid_request"
    assert (await _dataset_row(client, bob.headers, bobs["dataset_id"]))["status"] == "draft"
    assert (await _dataset_row(client, alice.headers, archived["dataset_id"]))["description"] is None  # untouched


@pytest.mark.parametrize("body,field", [
    ({"dataset_ids": ["dset_x"], "set": {}}, "set"),
    ({"dataset_ids": ["dset_x"], "set": {"visibility": "everyone"}}, "set.visibility"),
    ({"dataset_ids": ["dset_x"], "set": {"owner": "me"}}, "set.owner"),
    ({"dataset_ids": ["dset_x"], "set": {"status": "deleted"}}, "set.status"),
    ({"dataset_ids": [], "set": {"name": "x"}}, "dataset_ids"),
    ({"dataset_ids": [f"dset_{i}" for i in range(1001)], "set": {"name": "x"}}, "dataset_ids"),
    ({"set": {"name": "x"}}, "dataset_ids"),
    ({"dataset_ids": ["dset_x"]}, "set"),
])
async def test_patch_many_datasets_refuses_a_bad_request(client, alice, body, field):
    r = await client.patch("/v1/datasets", headers=alice.headers, json=body)
    assert r.status_code == 400
    assert field in error_of(r)["details"]["fields"]


async def test_a_second_tenant_cannot_tell_its_batches_from_missing_ids(client, alice, dataset):
    """Every foreign id answers exactly what a made-up id answers, on every batch route."""
    up = (await _initiate(client, alice.headers, dataset["dataset_id"], [_file(0, b"x")])).json()["data"]["results"][0]["upload"]
    carol = await signup(client)
    for route in ("/v1/objects/confirm/batch", "/v1/objects/delete/batch"):
        res = (await client.post(route, headers=carol.headers, json={"object_ids": [up["object_id"], "obj_madeup"]})).json()
        first, second = res["data"]["results"]
        assert first["error"] == second["error"] and first["error"]["code"] == "not_found"
    res = (await client.patch("/v1/datasets", headers=carol.headers, json={
        "dataset_ids": [dataset["dataset_id"], "dset_madeup"], "set": {"name": "mine now"}})).json()["data"]["results"]
    assert res[0]["error"] == res[1]["error"] and res[0]["error"]["code"] == "not_found"
    assert (await _dataset_row(client, alice.headers, dataset["dataset_id"]))["name"] == "Batch set"


def _events(cfg, event_type: str) -> list[dict]:
    """The ``data`` of every queued event of ``event_type``, oldest first."""
    rows = query(cfg, "SELECT body FROM webhook_events WHERE type = ? ORDER BY created_at, id", event_type)
    return [orjson.loads(bytes(body))["data"] for (body,) in rows]


async def test_batch_confirm_and_delete_write_the_single_routes_events(client, alice, dataset, cfg):
    """A batch announces what the single routes announce, in the outbox (so in the same
    transaction): object.uploaded per object it confirmed, object.status_changed per object
    it deleted; nothing for items that failed or changed nothing (a repeat, a tombstone)."""
    hook = await client.post("/v1/webhooks", headers=alice.headers, json={
        "url": "http://127.0.0.1:9/hook", "events": ["object.uploaded", "object.status_changed"]})
    assert hook.status_code == 201, hook.text
    bodies = [b"zero", b"one, never sent", b"two", b"three, confirmed alone"]
    ups = [x["upload"] for x in (await _initiate(client, alice.headers, dataset["dataset_id"],
                                                 [_file(i, b) for i, b in enumerate(bodies)])).json()["data"]["results"]]
    ids = [u["object_id"] for u in ups]
    for i in (0, 2, 3):
        assert (await client.put(ups[i]["upload_url"], content=bodies[i])).status_code == 200
    single = await client.post(f"/v1/objects/{ids[3]}/confirm", headers=alice.headers, json={})
    assert single.status_code == 200, single.text
    res = (await _confirm(client, alice.headers, [ids[0], ids[1], ids[2], "obj_nope", ids[0], ids[3]])).json()["data"]["results"]
    assert [x["ok"] for x in res] == [True, False, True, False, False, True]

    uploaded = _events(cfg, "object.uploaded")
    assert uploaded[0]["object_id"] == ids[3]  # once: confirming it again in the batch changed nothing
    assert sorted(e["object_id"] for e in uploaded[1:]) == sorted([ids[0], ids[2]])
    assert set(uploaded[1]) == set(uploaded[0])  # the single route's event, field for field
    for event in uploaded[1:]:
        obj = (await client.get(f"/v1/objects/{event['object_id']}", headers=alice.headers)).json()["data"]
        assert event == {"object_id": obj["object_id"], "dataset_id": dataset["dataset_id"],
                         "original_filename": obj["original_filename"], "mime_type": "text/plain",
                         "size_bytes": obj["size_bytes"], "checksum_sha256": obj["checksum_sha256"],
                         "status": "uploaded", "review_state": "staged"}

    assert (await client.delete(f"/v1/objects/{ids[3]}", headers=alice.headers)).status_code == 200
    res = (await _delete(client, alice.headers, [ids[0], ids[1], "obj_nope", ids[0], ids[3]])).json()["data"]["results"]
    assert [x["ok"] for x in res] == [True, True, False, False, True]  # ids[3]: already a tombstone
    changed = _events(cfg, "object.status_changed")
    assert [(e["object_id"], e["previous_status"], e["status"]) for e in changed[:1]] == [(ids[3], "uploaded", "deleted")]
    assert sorted((e["object_id"], e["previous_status"], e["status"]) for e in changed[1:]) == sorted(
        [(ids[0], "uploaded", "deleted"), (ids[1], "pending_upload", "deleted")])
    batch_of_0 = next(e for e in changed if e["object_id"] == ids[0])
    assert batch_of_0 == {**changed[0], "object_id": ids[0]}  # the single route's event, field for field
    deliveries = (await client.get(f"/v1/webhooks/{hook.json()['data']['webhook_id']}/deliveries?limit=100",
                                   headers=alice.headers)).json()["data"]["deliveries"]
    assert len(deliveries) == len(uploaded) + len(changed)  # one delivery per event to the one endpoint
