"""Objects after upload: listing, deletion, downloads, abandoned uploads, idempotent initiate.

Where bytes are checked: local blobs, files under the data dir; S3, keys and multipart
uploads in the bucket, and S3's own answers to its presigned URLs.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tests.conftest import S3, create_dataset, error_of, make_config
from tests.http.uploads_helpers import MULTIPART, MiB, initiate, put_parts, sha, upload


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **MULTIPART)


@pytest.fixture(name="dataset")
async def _dataset(client, alice):
    return await create_dataset(client, alice.headers)


async def blob_stored(service, cfg, blob_id: str) -> bool:
    """Whether an object's bytes are in place: local, its file; S3, its key."""
    if S3:
        return await service.services.objects.blobs.exists(blob_id)
    return (cfg.data_dir / "blobs" / "objects" / blob_id).exists()


async def s3_parts(service, up) -> list[int]:
    """S3: the part numbers S3 holds in the upload's unfinished multipart upload."""
    upload_row = await service.services.store.get_upload(up["upload_id"])
    held = await service.services.objects.blobs.received_parts(upload_row, up["blob_id"], [])
    return sorted(p.part_number for p in held or [])


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode(dict(parse_qsl(parts.query)) | changes)))


async def test_list_filters_and_paginates(client, alice, dataset):
    done = [(await upload(client, alice.headers, dataset["dataset_id"], b"x" * (i + 1)))["object_id"] for i in range(3)]
    pending = (await initiate(client, alice.headers, dataset["dataset_id"], b"yy")).json()["data"]["object_id"]
    url = f"/v1/datasets/{dataset['dataset_id']}/objects"
    everything = (await client.get(url, headers=alice.headers)).json()["data"]
    assert [o["object_id"] for o in everything["objects"]] == [pending, *reversed(done)]
    uploaded = (await client.get(url, headers=alice.headers, params={"status": "uploaded"})).json()["data"]
    assert [o["object_id"] for o in uploaded["objects"]] == list(reversed(done))
    staged = (await client.get(url, headers=alice.headers, params={"review_state": "staged", "limit": 2})).json()["data"]
    assert len(staged["objects"]) == 2 and staged["has_more"]
    rest = (await client.get(url, headers=alice.headers, params={"review_state": "staged", "cursor": staged["next_cursor"]})).json()["data"]
    assert [o["object_id"] for o in staged["objects"] + rest["objects"]] == [pending, *reversed(done)]
    assert (await client.get(url, headers=alice.headers, params={"status": "sleeping"})).status_code == 400
    assert (await client.get(url, headers=alice.headers, params={"review_state": "maybe"})).status_code == 400


async def test_delete_keeps_a_tombstone_removes_bytes_and_uncounts(client, alice, dataset, cfg, service):
    a = await upload(client, alice.headers, dataset["dataset_id"], b"a" * 100)
    b = await upload(client, alice.headers, dataset["dataset_id"], b"b" * 50)
    assert await blob_stored(service, cfg, a["blob_id"])
    old_url = (await client.get(f"/v1/objects/{a['object_id']}/download-url", headers=alice.headers)).json()["data"]["download_url"]
    r = await client.delete(f"/v1/objects/{a['object_id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["data"]["status"] == "deleted" and r.json()["data"]["deleted_at"]
    assert not await blob_stored(service, cfg, a["blob_id"])
    assert await blob_stored(service, cfg, b["blob_id"])  # only the deleted object's bytes
    tomb = (await client.get(f"/v1/objects/{a['object_id']}", headers=alice.headers)).json()["data"]
    assert tomb["status"] == "deleted"
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["object_count"] == 1 and ds["total_bytes"] == 50
    listed = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/objects", headers=alice.headers)).json()["data"]
    assert a["object_id"] not in [o["object_id"] for o in listed["objects"]]
    deleted = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/objects?status=deleted", headers=alice.headers)).json()["data"]
    assert [o["object_id"] for o in deleted["objects"]] == [a["object_id"]]
    assert (await client.delete(f"/v1/objects/{a['object_id']}", headers=alice.headers)).status_code == 200  # harmless again
    assert (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]["object_count"] == 1
    r = await client.get(f"/v1/objects/{a['object_id']}/download-url", headers=alice.headers)
    assert r.status_code == 409
    assert (await client.get(old_url)).status_code == 404
    assert (await client.post(f"/v1/objects/{a['object_id']}/confirm", headers=alice.headers)).status_code == 409


async def test_deleting_an_object_while_its_dataset_goes_is_a_404_not_a_crashed_actor(client, alice, dataset, service,
                                                                                     monkeypatch):
    """CI's schemathesis run (two workers) deleted an object while its dataset was being
    deleted: the object's read after the tombstone found no live dataset, an assertion
    failed in the dataset's actor and the request was a 503 with the actor restarted."""
    a = await upload(client, alice.headers, dataset["dataset_id"], b"a" * 100)
    store = service.services.store
    real = store.get_object
    calls = []

    async def dataset_gone_after_the_tombstone(tenant_id, object_id):
        calls.append(object_id)
        return None if len(calls) > 1 else await real(tenant_id, object_id)  # the first read is the route's own

    monkeypatch.setattr(store, "get_object", dataset_gone_after_the_tombstone)
    r = await client.delete(f"/v1/objects/{a['object_id']}", headers=alice.headers)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found", r.text  # a crashed actor answered 503
    monkeypatch.setattr(store, "get_object", real)
    assert (await client.get(f"/v1/objects/{a['object_id']}", headers=alice.headers)).json()["data"]["status"] == "deleted"


async def test_a_renewal_whose_dataset_goes_meanwhile_replays_instead_of_failing(client, alice, dataset, service, cfg,
                                                                                 monkeypatch):
    """The renewal's read after the actor renewed the upload finds no live dataset when the
    dataset was deleted meanwhile: an assertion failed there (a 500). Now nothing is
    renewed and the stored answer is replayed, as for a deleted object."""
    h = {**alice.headers, "Idempotency-Key": "renew-while-the-dataset-goes"}
    body = {"filename": "a.txt", "content_type": "text/plain", "size_bytes": 100}
    url = f"/v1/datasets/{dataset['dataset_id']}/objects/upload"
    first = (await client.post(url, headers=h, json=body)).json()["data"]
    objects, store = service.services.objects, service.services.store
    later = objects.now() + timedelta(seconds=cfg.uploads.url_ttl_seconds + 5)
    monkeypatch.setattr(objects, "now", lambda: later)
    real = store.get_object
    calls = []

    async def dataset_gone_after_the_renewal(tenant_id, object_id):
        calls.append(object_id)
        return None if len(calls) > 1 else await real(tenant_id, object_id)

    monkeypatch.setattr(store, "get_object", dataset_gone_after_the_renewal)
    again = await client.post(url, headers=h, json=body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["data"] == first and len(calls) == 2


async def test_deleting_a_pending_upload_removes_its_parts(client, alice, dataset, cfg, service):
    """Local: the staged part files go and the part URLs are refused (403). S3: the
    multipart upload is aborted, so S3 drops its parts and its part URLs answer 404."""
    data = b"p" * (11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    await put_parts(client, up, data, order=[1])
    if S3:
        assert await s3_parts(service, up) == [1]
    else:
        assert any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    await client.delete(f"/v1/objects/{up['object_id']}", headers=alice.headers)
    if S3:
        assert await s3_parts(service, up) == []
    else:
        assert not any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    late = await client.put(up["parts"][1]["upload_url"], content=data[5 * MiB : 10 * MiB])
    assert late.status_code == (404 if S3 else 403)
    assert not await blob_stored(service, cfg, up["blob_id"])


async def test_download_url_works_at_any_state_with_bytes(client, alice, dataset):
    """The download URL is for GET only: local, the route has no PUT (405); S3, the
    signature covers the method (403). An altered URL is refused (403) on both."""
    up = (await initiate(client, alice.headers, dataset["dataset_id"], b"q")).json()["data"]
    r = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
    assert r.status_code == 409  # nothing stored yet
    up = await upload(client, alice.headers, dataset["dataset_id"], b"r" * 10)
    r = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
    data = r.json()["data"]
    assert set(data) == {"download_url", "expires_at"}
    url = data["download_url"]
    if S3:
        tampered = _with_query(url, **{"X-Amz-Signature": "0" * 64})
    else:
        tampered = url.replace("length=10", "length=11")
    assert tampered != url
    assert (await client.get(tampered)).status_code == 403
    assert (await client.put(url, content=b"x")).status_code == (403 if S3 else 405)
    got = await client.get(url)
    assert got.status_code == 200 and got.content == b"r" * 10


async def test_abandoned_uploads_are_cleaned_once_urls_expire(client, alice, dataset, service, cfg, monkeypatch):
    data = b"s" * (11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    await put_parts(client, up, data, order=[1, 2])
    objects = service.services.objects
    assert await objects.sweep_abandoned() == 0  # URLs still valid: nothing to clean
    if S3:
        assert await s3_parts(service, up) == [1, 2]
    later = objects.now() + timedelta(seconds=cfg.uploads.url_ttl_seconds + 1)
    monkeypatch.setattr(objects, "now", lambda: later)
    assert await objects.sweep_abandoned() == 1
    if S3:  # the multipart upload is aborted: S3 drops the parts, the URLs of the rest are dead
        assert await s3_parts(service, up) == []
    else:
        assert not any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    late = await client.put(up["parts"][2]["upload_url"], content=data[10 * MiB :])
    assert late.status_code == (404 if S3 else 403)
    assert not await blob_stored(service, cfg, up["blob_id"])
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "failed" and obj["failure_reason"] == "upload_abandoned"
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["object_count"] == 0 and ds["total_bytes"] == 0
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers)
    assert r.status_code == 409 and error_of(r)["details"]["upload_state"] == "abandoned"


async def test_same_idempotency_key_returns_same_object_and_fresh_urls_after_expiry(client, alice, dataset, service, cfg, monkeypatch):
    h = {**alice.headers, "Idempotency-Key": "upload-invoice-0425"}
    data = b"t" * 100
    body = {"filename": "a.txt", "content_type": "text/plain", "size_bytes": len(data)}
    url = f"/v1/datasets/{dataset['dataset_id']}/objects/upload"
    first = (await client.post(url, headers=h, json=body)).json()["data"]
    again = await client.post(url, headers=h, json=body)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["data"] == first
    objects = service.services.objects
    later = objects.now() + timedelta(seconds=cfg.uploads.url_ttl_seconds + 5)
    monkeypatch.setattr(objects, "now", lambda: later)
    await objects.sweep_abandoned()  # even once cleaned up, the same key revives the same object
    fresh = await client.post(url, headers=h, json=body)
    assert fresh.status_code == 201 and fresh.headers["Idempotent-Replayed"] == "true"
    renewed = fresh.json()["data"]
    assert renewed["object_id"] == first["object_id"] and renewed["upload_id"] == first["upload_id"]
    assert renewed["expires_at"] > first["expires_at"] and renewed["upload_url"] != first["upload_url"]
    monkeypatch.undo()
    obj = (await client.get(f"/v1/objects/{first['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "pending_upload"
    listed = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/objects", headers=alice.headers)).json()["data"]
    assert len(listed["objects"]) == 1


async def test_deleting_a_dataset_purges_its_objects(client, alice, dataset, cfg, service):
    up = await upload(client, alice.headers, dataset["dataset_id"], b"u" * 10)
    assert await blob_stored(service, cfg, up["blob_id"])
    assert (await client.delete(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).status_code == 200
    assert not await blob_stored(service, cfg, up["blob_id"])
    assert (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).status_code == 404  # gone with its dataset
    row = (await service.services.store.get_object_by_blob(up["blob_id"]))  # the tombstone stays in the store
    assert row is not None and row.status == "deleted"


async def test_objects_can_be_looked_up_by_their_verified_checksum(client, alice, bob, dataset):
    one = await upload(client, alice.headers, dataset["dataset_id"], b"same bytes", filename="a.txt")
    two = await upload(client, alice.headers, dataset["dataset_id"], b"same bytes", filename="b.txt")
    await upload(client, alice.headers, dataset["dataset_id"], b"other bytes", filename="c.txt")
    pending = (await initiate(client, alice.headers, dataset["dataset_id"], b"same bytes", checksum_sha256=sha(b"same bytes"))).json()["data"]
    url = f"/v1/datasets/{dataset['dataset_id']}/objects"
    for digest in (sha(b"same bytes"), sha(b"same bytes").upper()):
        r = await client.get(url, headers=alice.headers, params={"checksum_sha256": digest})
        ids = [o["object_id"] for o in r.json()["data"]["objects"]]
        assert ids == [two["object_id"], one["object_id"]]  # verified ones only: not the unconfirmed upload
    assert pending["object_id"] not in ids
    assert (await client.get(url, headers=alice.headers, params={"checksum_sha256": sha(b"nothing")})).json()["data"]["objects"] == []
    for bad in ("abc", "g" * 64, sha(b"x") + "0"):
        r = await client.get(url, headers=alice.headers, params={"checksum_sha256": bad})
        assert r.status_code == 400 and "checksum_sha256" in error_of(r)["details"]["fields"]
    assert (await client.get(url, headers=bob.headers, params={"checksum_sha256": sha(b"same bytes")})).status_code == 404
