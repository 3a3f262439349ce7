"""Objects after upload: listing, deletion, downloads, abandoned uploads, idempotent initiate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import create_dataset, error_of, make_config
from tests.http.uploads_helpers import MULTIPART, MiB, initiate, put_parts, upload


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **MULTIPART)


@pytest.fixture(name="dataset")
async def _dataset(client, alice):
    return await create_dataset(client, alice.headers)


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


async def test_delete_keeps_a_tombstone_removes_bytes_and_uncounts(client, alice, dataset, cfg):
    a = await upload(client, alice.headers, dataset["dataset_id"], b"a" * 100)
    await upload(client, alice.headers, dataset["dataset_id"], b"b" * 50)
    blob = cfg.data_dir / "blobs" / "objects" / a["blob_id"]
    assert blob.exists()
    old_url = (await client.get(f"/v1/objects/{a['object_id']}/download-url", headers=alice.headers)).json()["data"]["download_url"]
    r = await client.delete(f"/v1/objects/{a['object_id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["data"]["status"] == "deleted" and r.json()["data"]["deleted_at"]
    assert not blob.exists()
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


async def test_deleting_a_pending_upload_removes_its_parts(client, alice, dataset, cfg):
    data = b"p" * (11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    await put_parts(client, up, data, order=[1])
    assert any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    await client.delete(f"/v1/objects/{up['object_id']}", headers=alice.headers)
    assert not any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    assert (await client.put(up["parts"][1]["upload_url"], content=data[5 * MiB : 10 * MiB])).status_code == 403


async def test_download_url_works_at_any_state_with_bytes(client, alice, dataset):
    up = (await initiate(client, alice.headers, dataset["dataset_id"], b"q")).json()["data"]
    r = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
    assert r.status_code == 409  # nothing stored yet
    up = await upload(client, alice.headers, dataset["dataset_id"], b"r" * 10)
    r = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
    data = r.json()["data"]
    assert set(data) == {"download_url", "expires_at"}
    tampered = data["download_url"].replace("length=10", "length=11")
    assert (await client.get(tampered)).status_code == 403
    assert (await client.put(data["download_url"], content=b"x")).status_code == 405


async def test_abandoned_uploads_are_cleaned_once_urls_expire(client, alice, dataset, service, cfg, monkeypatch):
    data = b"s" * (11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    await put_parts(client, up, data, order=[1, 2])
    objects = service.services.objects
    assert await objects.sweep_abandoned() == 0  # URLs still valid: nothing to clean
    later = objects.now() + timedelta(seconds=cfg.uploads.url_ttl_seconds + 1)
    monkeypatch.setattr(objects, "now", lambda: later)
    assert await objects.sweep_abandoned() == 1
    assert not any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
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


async def test_deleting_a_dataset_purges_its_objects(client, alice, dataset, cfg):
    up = await upload(client, alice.headers, dataset["dataset_id"], b"u" * 10)
    assert (cfg.data_dir / "blobs" / "objects" / up["blob_id"]).exists()
    assert (await client.delete(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).status_code == 200
    assert not (cfg.data_dir / "blobs" / "objects" / up["blob_id"]).exists()
    assert (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]["status"] == "deleted"
