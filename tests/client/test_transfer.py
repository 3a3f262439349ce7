"""``upload_file`` (parallel parts, checksum, renewal of expired URLs) and ``download``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from engine.client import ResumeStore
from tests.conftest import S3
from tests.http.uploads_helpers import MiB, sha


class Events:
    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.bytes = 0

    def hashing(self, path, size):
        self.log.append(("hashing", path.name))

    def started(self, path, size, parts_total, parts_done):
        self.log.append(("started", path.name, parts_total, parts_done))

    def advance(self, path, nbytes):
        self.bytes += nbytes

    def finished(self, path, result):
        self.log.append(("finished", path.name, result.ok))


async def test_multipart_upload_then_download_round_trip(api, recorder, tmp_path, alice, client):
    data = os.urandom(13 * MiB)
    (tmp_path / "blob.bin").write_bytes(data)
    ds = await api.create_dataset("bin", source_modality="mixed")
    events = Events()
    result = await api.upload_file(ds["dataset_id"], tmp_path / "blob.bin", content_type="application/pdf",
                                   resume=ResumeStore(tmp_path / "state"), parallel=3, events=events)
    assert result.ok and result.status == "uploaded" and result.strategy == "multipart"
    assert result.parts_total == 3 and result.parts_sent == 3 and result.checksum_sha256 == sha(data)
    assert events.log == [("hashing", "blob.bin"), ("started", "blob.bin", 3, 0), ("finished", "blob.bin", True)]
    assert events.bytes == len(data)
    puts = [h for m, p, h in recorder.seen if m == "PUT"]
    assert len(puts) == 3 and all("Authorization" not in h for h in puts)  # presigned: no credentials
    complete = [p for m, p, _ in recorder.seen if m == "POST" and p.endswith("/complete")]
    assert complete == [f"/v1/uploads/{result.upload_id}/complete"]
    assert not list((tmp_path / "state").glob("*.json"))

    out = await api.download(result.object_id, tmp_path)  # a directory: the original name is kept
    assert out == tmp_path / "blob.bin" and out.read_bytes() == data
    other = await api.download(result.object_id, tmp_path / "copy.bin")
    assert other.read_bytes() == data


async def test_an_expired_part_url_is_renewed_by_reinitiating_with_the_same_key(api, recorder, tmp_path, alice, client):
    data = b"renew me\n" * 1000
    (tmp_path / "a.txt").write_bytes(data)
    ds = await api.create_dataset("r")
    recorder.faults.append(("PUT", "403"))
    result = await api.upload_file(ds["dataset_id"], tmp_path / "a.txt", content_type="text/plain")
    assert result.ok and result.checksum_sha256 == sha(data), result.error
    initiations = [h["Idempotency-Key"] for m, p, h in recorder.seen if m == "POST" and p.endswith("/objects/upload")]
    assert len(initiations) == 2 and initiations[0] == initiations[1]
    objects = (await client.get(f"/v1/datasets/{ds['dataset_id']}/objects", headers=alice.headers)).json()["data"]["objects"]
    assert [o["object_id"] for o in objects] == [result.object_id]


async def test_a_failed_upload_is_a_result_not_an_exception(api, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "a.txt").write_bytes(b"x")
    empty = await api.upload_file("dset_any", tmp_path / "empty.txt", content_type="text/plain")
    assert not empty.ok and "empty" in empty.error["message"]
    missing = await api.upload_file("dset_missing", tmp_path / "a.txt", content_type="text/plain")
    assert not missing.ok and missing.error["code"] == "not_found" and missing.error["request_id"].startswith("req_")
    gone = await api.upload_file("dset_missing", Path(tmp_path / "nope.txt"), content_type="text/plain")
    assert not gone.ok and gone.error["code"] == "FileNotFoundError"


async def test_step_by_step_upload_through_post_uploads(api, tmp_path, cfg):
    """The low-level calls: initiate via POST /v1/uploads, PUT, confirm; then health. The
    presigned URLs are the engine's own (local blobs) or S3's, and so is the ETag: the
    engine's is the SHA-256, S3's the MD5."""
    data = b"step by step\n"
    ds = await api.create_dataset("steps")
    target = await api.create_upload(ds["dataset_id"], "s.txt", "text/plain", len(data), sha(data))
    assert target["upload_strategy"] == "single_part" and target["review_state"] == "staged"
    blobs_url = cfg.blobs.s3_endpoint if S3 else api.url
    assert target["upload_url"].startswith(blobs_url)
    etag = await api.put_presigned(target["upload_url"], data, len(data), "text/plain")
    assert etag.strip('"') == (hashlib.md5(data).hexdigest() if S3 else sha(data))
    confirmed = await api.confirm_upload(target["object_id"])
    assert confirmed == {"object_id": target["object_id"], "status": "uploaded", "review_state": "staged", "checksum_sha256": sha(data)}
    url = await api.download_url(target["object_id"])
    assert url["download_url"].startswith(blobs_url) and url["expires_at"]
    assert (await api.download(target["object_id"], tmp_path / "back.txt")).read_bytes() == data
    assert (await api.health())["status"] == "ok"
