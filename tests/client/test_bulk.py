"""The client's batch methods: initiate, confirm and delete many objects, change many datasets."""

from __future__ import annotations

import trio

from engine.client import Client
from engine.client.errors import InvalidRequest, NotFound
from tests.client.conftest import FAST
from tests.http.uploads_helpers import sha


async def test_batch_methods_round_trip(api, recorder):
    ds = await api.create_dataset("Batch")
    bodies = [b"one", b"two", b"three"]
    files = [{"filename": f"f{i}.txt", "content_type": "text/plain", "size_bytes": len(b), "checksum_sha256": sha(b)}
             for i, b in enumerate(bodies)]
    files.append({"filename": "song.mp3", "content_type": "audio/mpeg", "size_bytes": 3, "checksum_sha256": None})
    results = await api.initiate_uploads(ds["dataset_id"], files, idempotency_key="client-batch")
    assert [r["ok"] for r in results] == [True, True, True, False] and results[3]["error"]["code"] == "invalid_request"
    again = await api.initiate_uploads(ds["dataset_id"], files, idempotency_key="client-batch")  # replayed
    assert [r.get("upload", {}).get("object_id") for r in again] == [r.get("upload", {}).get("object_id") for r in results]
    path = f"/v1/datasets/{ds['dataset_id']}/objects/upload/batch"
    assert [h["Idempotency-Key"] for m, p, h in recorder.seen if p == path] == ["client-batch", "client-batch"]

    ids = [r["upload"]["object_id"] for r in results[:3]]
    for r, body in zip(results, bodies, strict=False):
        await api.put_presigned(r["upload"]["upload_url"], body, len(body))
    confirmed = await api.confirm_uploads([*ids, "obj_nope"])
    assert [c["ok"] for c in confirmed] == [True, True, True, False] and confirmed[3]["error"]["code"] == "not_found"
    assert (await api.get_dataset(ds["dataset_id"]))["object_count"] == 3

    deleted = await api.delete_objects(ids[:2])
    assert all(d["ok"] and d["data"]["status"] == "deleted" for d in deleted)
    assert (await api.get_dataset(ds["dataset_id"]))["object_count"] == 1

    other = await api.create_dataset("Other")
    changed = await api.update_datasets([ds["dataset_id"], other["dataset_id"], "dset_nope"], visibility="listed")
    assert [c["ok"] for c in changed] == [True, True, False] and changed[0]["data"]["visibility"] == "listed"
    try:
        await api.update_datasets([ds["dataset_id"]])
    except InvalidRequest as exc:
        assert "set" in exc.details["fields"]
    else:
        raise AssertionError("an empty change must be refused")


async def test_sync_client_has_the_batch_methods(service, alice):
    def work():
        with Client(service.url, token=alice.token, retry=FAST) as api:
            ds = api.create_dataset("Sync batch")
            results = api.initiate_uploads(ds["dataset_id"], [{"filename": "a.txt", "content_type": "text/plain",
                                                               "size_bytes": 1}])
            confirmed = api.confirm_uploads([results[0]["upload"]["object_id"]])
            deleted = api.delete_objects([results[0]["upload"]["object_id"]])
            changed = api.update_datasets([ds["dataset_id"]], description="d")
            try:
                api.initiate_uploads("dset_missing", [{"filename": "a.txt", "content_type": "text/plain", "size_bytes": 1}])
            except NotFound as exc:
                return confirmed, deleted, changed, exc
            raise AssertionError("a missing dataset fails the whole batch")

    confirmed, deleted, changed, error = await trio.to_thread.run_sync(work)
    assert confirmed[0]["error"]["code"] == "size_mismatch"  # nothing was PUT
    assert deleted[0]["ok"] and changed[0]["data"]["description"] == "d" and error.status == 404
