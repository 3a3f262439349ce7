"""The provider upload flow (seeds 000, 001): both paths, both strategies, every error.

On local blobs the engine's ``/blobs/`` route takes the bytes; on S3 (``IPTO_TEST_BACKEND=
postgres-s3``) the presigned URLs point at S3, which checks what it signed itself (length,
expiry, signature, a declared single-part SHA-256) and answers in its own XML. Where the
backends differ a test asserts each one's real behaviour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tests.conftest import S3, create_dataset, create_key, error_of, make_config
from tests.http.uploads_helpers import MULTIPART, MiB, initiate, put_parts, sha, upload


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **MULTIPART)


@pytest.fixture(name="dataset")
async def _dataset(client, alice):
    return await create_dataset(client, alice.headers, name="AP Invoices 2025")


def etag_of(data: bytes) -> str:
    """The ETag a PUT of ``data`` answers: the engine's is the SHA-256, S3's the MD5."""
    return f'"{hashlib.md5(data).hexdigest() if S3 else sha(data)}"'


def s3_error(response) -> str:
    """The code of S3's XML error answer."""
    found = re.search(r"<Code>([^<]+)</Code>", response.text)
    assert found, (response.status_code, response.text)
    return found.group(1)


async def bucket_keys(service) -> list[str]:
    """S3: every key stored under this test's prefix (uploads, objects, imports, artifacts)."""
    blobs = service.services.objects.blobs
    listed = await blobs._call("list_objects_v2", Prefix=blobs.prefix)
    return [o["Key"][len(blobs.prefix):] for o in listed.get("Contents", [])]


async def confirm_finds_nothing(client, alice, up, size: int) -> None:
    """Confirming fails cleanly: no bytes were received, so nothing is counted."""
    r = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "size_mismatch" and err["details"] == {"expected_size_bytes": size, "received_size_bytes": 0}
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "pending_upload" and obj["checksum_sha256"] is None


async def test_seed_flow_single_part_end_to_end(client, alice, dataset, cfg):
    data = b"invoice 0425: total 1,234.00 EUR\n" * 100
    r = await initiate(client, alice.headers, dataset["dataset_id"], data, checksum_sha256=sha(data))
    assert r.status_code == 201
    up = r.json()["data"]
    assert set(up) == {"upload_id", "object_id", "blob_id", "review_state", "upload_strategy", "upload_url", "expires_at"}
    assert up["upload_id"].startswith("upl_") and up["object_id"].startswith("obj_") and up["blob_id"].startswith("blob_")
    assert up["review_state"] == "staged" and up["upload_strategy"] == "single_part"
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "pending_upload" and obj["checksum_sha256"] is None

    put = await client.put(up["upload_url"], content=data, headers={"Content-Type": "text/plain"})  # no auth header
    assert put.status_code == 200
    assert put.headers["ETag"] == etag_of(data)

    # S3's ETag (an MD5, not the SHA-256) is what a client quotes back, and the engine takes
    # it (a single-part confirm does not compare it; multipart ones do, tests below)
    quoted = {"parts": [{"part_number": 1, "etag": put.headers["ETag"]}]} if S3 else None
    r = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers, json=quoted)
    assert r.status_code == 200, r.text
    assert r.json()["data"] | {"checksum_sha256": None} == {
        "object_id": up["object_id"], "status": "uploaded", "review_state": "staged", "checksum_sha256": None}
    assert S3 or not (cfg.data_dir / "blobs" / "staging" / up["upload_id"]).exists()  # the upload's folder went with its part

    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["dataset_id"] == dataset["dataset_id"] and obj["tenant_id"] == alice.tenant_id
    assert obj["original_filename"] == "invoice-0425.txt" and obj["mime_type"] == "text/plain"
    assert obj["size_bytes"] == len(data) and obj["checksum_sha256"] == sha(data)
    assert obj["status"] == "uploaded" and obj["review_state"] == "staged" and obj["uploaded_at"]
    assert obj["artifact_summary"] == {"plain_text": False, "ocr_blocks": False, "chunk_embeddings": False}
    assert obj["latest_job_id"] is None and obj["created_at"]

    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["object_count"] == 1 and ds["total_bytes"] == len(data) and ds["status"] == "ingesting"

    url = (await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)).json()["data"]
    got = await client.get(url["download_url"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "text/plain"


async def test_uploads_path_with_complete(client, alice, dataset):
    data = os.urandom(1000)
    r = await client.post("/v1/uploads", headers=alice.headers, json={
        "dataset_id": dataset["dataset_id"], "filename": "a.txt", "content_type": "text/plain", "size_bytes": len(data)})
    assert r.status_code == 201
    up = r.json()["data"]
    assert (await client.put(up["upload_url"], content=data)).status_code == 200
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers)
    assert r.status_code == 200 and r.json()["data"]["status"] == "uploaded"
    # without a declared checksum the server still records the one it computed
    assert r.json()["data"]["checksum_sha256"] == sha(data)


async def test_multipart_with_parts_out_of_order(client, alice, dataset, cfg):
    data = os.urandom(12 * MiB + 12345)
    r = await client.post("/v1/uploads", headers=alice.headers, json={
        "dataset_id": dataset["dataset_id"], "filename": "big.pdf", "content_type": "application/pdf",
        "size_bytes": len(data), "checksum_sha256": sha(data)})
    up = r.json()["data"]
    assert up["upload_strategy"] == "multipart" and up["upload_url"] is None
    assert up["part_size_bytes"] == 5 * MiB and [p["part_number"] for p in up["parts"]] == [1, 2, 3]
    etags = await put_parts(client, up, data, order=[3, 1, 2])
    assert [e["etag"] for e in etags] == [etag_of(data[(n - 1) * 5 * MiB : n * 5 * MiB]) for n in (3, 1, 2)]
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers, json={"parts": etags})
    assert r.status_code == 200, r.text  # on S3: S3's own part ETags, accepted as quoted
    assert r.json()["data"]["checksum_sha256"] == sha(data)
    assert S3 or not (cfg.data_dir / "blobs" / "staging" / up["upload_id"]).exists()  # the received parts are gone
    url = (await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)).json()["data"]["download_url"]
    assert (await client.get(url)).content == data


async def test_multipart_missing_part_and_bad_etag_are_422_naming_the_part(client, alice, dataset):
    data = os.urandom(11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    etags = await put_parts(client, up, data, order=[1, 3])
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers, json={"parts": etags})
    assert r.status_code == 422 and error_of(r)["details"]["missing_parts"] == [2]
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers)
    assert r.status_code == 422 and error_of(r)["details"]["missing_parts"] == [2]
    etags += await put_parts(client, up, data, order=[2])
    bad = [dict(e, etag='"' + "0" * 64 + '"') if e["part_number"] == 3 else e for e in etags]
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers, json={"parts": bad})
    assert r.status_code == 422 and error_of(r)["details"]["part_number"] == 3
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers, json={"parts": etags})
    assert r.status_code == 200


async def test_multipart_short_part_is_refused_and_the_upload_stays_open(client, alice, dataset, service):
    """Local: the engine takes the short part and confirming names it (422 size_mismatch).
    S3: the part's length is signed, so S3 refuses the PUT (403) and confirming finds the part
    missing. Either way nothing is stored as the object, and the right part completes it."""
    data = os.urandom(11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    etags = await put_parts(client, up, data, order=[1, 3])
    short = await client.put(up["parts"][1]["upload_url"], content=b"x" * 100)
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers)
    assert r.status_code == 422
    err = error_of(r)
    if S3:
        assert short.status_code == 403 and s3_error(short) == "SignatureDoesNotMatch"
        assert err["details"]["missing_parts"] == [2]
        upload_row = await service.services.store.get_upload(up["upload_id"])
        held = await service.services.objects.blobs.received_parts(upload_row, up["blob_id"], [])
        assert sorted((p.part_number, p.size_bytes) for p in held) == [(1, 5 * MiB), (3, MiB)]
    else:
        assert short.status_code == 200
        assert err["code"] == "size_mismatch" and err["details"]["part_number"] == 2
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "pending_upload"
    etags += await put_parts(client, up, data, order=[2])
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers, json={"parts": etags})
    assert r.status_code == 200 and r.json()["data"]["checksum_sha256"] == sha(data)


async def test_size_mismatch(client, alice, dataset, service):
    """Local: the short body is taken and confirming says size_mismatch (900 of 1000 bytes).
    S3: the length is signed, so S3 refuses the short PUT (403) and stores nothing."""
    data = b"a" * 1000
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    r = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)
    assert r.status_code == 422 and error_of(r)["code"] == "size_mismatch"  # nothing received yet
    short = await client.put(up["upload_url"], content=data[:900])
    if S3:
        assert short.status_code == 403 and s3_error(short) == "SignatureDoesNotMatch"
        assert await bucket_keys(service) == []
        await confirm_finds_nothing(client, alice, up, 1000)
    else:
        assert short.status_code == 200
        r = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)
        assert r.status_code == 422
        err = error_of(r)
        assert err["code"] == "size_mismatch"
        assert err["details"] == {"expected_size_bytes": 1000, "received_size_bytes": 900}
    # the upload stays open: send the right bytes and confirm
    assert (await client.put(up["upload_url"], content=data)).status_code == 200
    assert (await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)).status_code == 200


async def test_checksum_mismatch(client, alice, dataset, service):
    """Local: the bytes are taken and confirming says checksum_mismatch. S3: the declared
    SHA-256 rides in the single-part URL, so S3 refuses other bytes (400 BadDigest) and
    stores nothing; confirming then finds nothing received."""
    data = b"b" * 1000
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data, checksum_sha256=sha(b"other"))).json()["data"]
    put = await client.put(up["upload_url"], content=data)
    if S3:
        assert put.status_code == 400 and s3_error(put) == "BadDigest"
        assert await bucket_keys(service) == []
        await confirm_finds_nothing(client, alice, up, len(data))
    else:
        assert put.status_code == 200
        r = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)
        assert r.status_code == 422
        err = error_of(r)
        assert err["code"] == "checksum_mismatch" and err["details"]["computed_sha256"] == sha(data)
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "pending_upload"
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["object_count"] == 0 and ds["total_bytes"] == 0


async def test_multipart_checksum_mismatch_is_found_by_the_engine(client, alice, dataset, service):
    """Multipart URLs carry no whole-object checksum (S3 checksums a multipart upload only as
    a composite of its parts), so S3 takes any bytes of the right lengths: the engine's own
    SHA-256 decides, on both backends, and nothing is stored or counted."""
    data = os.urandom(11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data, checksum_sha256=sha(b"other"))).json()["data"]
    etags = await put_parts(client, up, data)
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers, json={"parts": etags})
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "checksum_mismatch"
    assert err["details"] == {"expected_sha256": sha(b"other"), "computed_sha256": sha(data)}
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "pending_upload" and obj["checksum_sha256"] is None
    assert not await service.services.objects.blobs.exists(up["blob_id"])
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["object_count"] == 0 and ds["total_bytes"] == 0


def _alter(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


# Each changes what the URL's signature covers, or drops it (ids name what was changed).
LOCAL_TAMPERS = {
    "length": lambda u: _alter(u, length="999999"),
    "part": lambda u: _alter(u, part="2"),
    "expires": lambda u: _alter(u, expires="9999999999"),
    "signature": lambda u: _alter(u, signature="0" * 64),
    "signature-non-ascii": lambda u: _alter(u, signature="\u00e9" * 64),  # was a 500: compare_digest refuses non-ASCII str
    "upload-id": lambda u: u.replace("/blobs/uploads/upl_", "/blobs/uploads/upl_x"),
    "unsigned": lambda u: u.split("?")[0],
}
S3_TAMPERS = {
    "length-unsigned": lambda u: _alter(u, **{"X-Amz-SignedHeaders": "host"}),  # Content-Length no longer signed
    "part": lambda u: _alter(u, partNumber="2"),
    "expires": lambda u: _alter(u, **{"X-Amz-Expires": "604800"}),
    "date": lambda u: _alter(u, **{"X-Amz-Date": "20991231T000000Z"}),
    "signature": lambda u: _alter(u, **{"X-Amz-Signature": "0" * 64}),
    "credential": lambda u: u.replace("X-Amz-Credential=", "X-Amz-Credential=X"),
    "upload-id": lambda u: u.replace("/uploads/upl_", "/uploads/upl_x"),
    "unsigned": lambda u: u.split("?")[0],
}
TAMPERS = S3_TAMPERS if S3 else LOCAL_TAMPERS


@pytest.mark.parametrize("tamper", list(TAMPERS.values()), ids=list(TAMPERS))
async def test_tampered_url_is_403_without_side_effect(client, alice, dataset, tamper, cfg, service):
    data = b"c" * 100
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    tampered = tamper(up["upload_url"])
    assert tampered != up["upload_url"]
    r = await client.put(tampered, content=data)
    assert r.status_code == 403
    if S3:
        assert s3_error(r) in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")
        assert await bucket_keys(service) == []
    else:
        assert error_of(r)["code"] == "forbidden"
        staging = cfg.data_dir / "blobs" / "staging"
        assert not any(staging.rglob("*.*"))
    await confirm_finds_nothing(client, alice, up, len(data))


async def test_expired_url_is_403(client, alice, dataset, service, monkeypatch):
    """A URL used after it expired is refused and stores nothing. Local: signed by the
    engine's signer with a past expiry. S3: signed an hour ago for one second, through the
    blob store (as SigV4 counts from the signing time)."""
    data = b"d" * 100
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    objects = service.services.objects
    upload_row = await service.services.store.get_upload(up["upload_id"])
    past = dataclasses.replace(upload_row, expires_at=objects.now() - timedelta(seconds=1))
    if S3:
        import botocore.auth

        signed_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
        with monkeypatch.context() as clock:
            clock.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: signed_at)
            (url,) = await objects.blobs.upload_urls(past, up["blob_id"], len(data), None)
        r = await client.put(url, content=data)
        assert r.status_code == 403
        assert s3_error(r) == "AccessDenied" and "expired" in r.text.lower()
        assert await bucket_keys(service) == []
    else:
        r = await client.put(objects.blobs.put_url(past, 1, len(data)), content=data)
        assert r.status_code == 403
        assert "expired" in error_of(r)["message"]
    await confirm_finds_nothing(client, alice, up, len(data))


async def test_url_reused_after_completion_changes_nothing(client, alice, dataset):
    """Local: an upload's URLs die with its completion (403). S3: a presigned URL lives until
    it expires, so S3 still takes a single-part PUT (other bytes are refused only where a
    checksum was declared: 400 BadDigest) into staging, never into the confirmed object; a
    completed multipart upload is gone from S3, so its part URLs answer 404 NoSuchUpload."""

    async def download(up):
        got = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
        return (await client.get(got.json()["data"]["download_url"])).content

    async def confirmed_again(up, data):
        r = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)
        assert r.status_code == 200 and r.json()["data"]["checksum_sha256"] == sha(data)

    data = b"e" * 100
    up = await upload(client, alice.headers, dataset["dataset_id"], data)  # checksum declared
    r = await client.put(up["upload_url"], content=b"f" * 100)
    if S3:
        assert r.status_code == 400 and s3_error(r) == "BadDigest"
    else:
        assert r.status_code == 403
    assert await download(up) == data
    await confirmed_again(up, data)

    plain = b"p" * 100  # no checksum declared
    up = (await initiate(client, alice.headers, dataset["dataset_id"], plain)).json()["data"]
    assert (await client.put(up["upload_url"], content=plain)).status_code == 200
    assert (await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)).status_code == 200
    r = await client.put(up["upload_url"], content=b"q" * 100)
    assert r.status_code == (200 if S3 else 403)
    assert await download(up) == plain
    await confirmed_again(up, plain)
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["checksum_sha256"] == sha(plain) and obj["size_bytes"] == len(plain)

    big = os.urandom(11 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], big, checksum_sha256=sha(big))).json()["data"]
    etags = await put_parts(client, up, big)
    r = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers, json={"parts": etags})
    assert r.status_code == 200
    r = await client.put(up["parts"][0]["upload_url"], content=os.urandom(5 * MiB))
    if S3:
        assert r.status_code == 404 and s3_error(r) == "NoSuchUpload"
    else:
        assert r.status_code == 403
    assert await download(up) == big
    await confirmed_again(up, big)


async def test_body_longer_than_declared_is_refused(client, alice, dataset, cfg, service):
    """Local: the route cuts the body off at the declared length (413), streamed or not.
    S3: Content-Length is signed, so a longer or unannounced (chunked) body is refused (403).
    Nothing is stored either way."""
    data = b"g" * 1000
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    r = await client.put(up["upload_url"], content=data + b"extra")
    if S3:
        assert r.status_code == 403 and s3_error(r) == "SignatureDoesNotMatch"
    else:
        assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"

    async def chunked():  # no Content-Length: cut off while streaming
        for _ in range(3):
            yield b"h" * 600

    r = await client.put(up["upload_url"], content=chunked())
    if S3:
        assert r.status_code == 403 and s3_error(r) == "SignatureDoesNotMatch"
        assert await bucket_keys(service) == []
    else:
        assert r.status_code == 413
        assert not any((cfg.data_dir / "blobs" / "tmp").iterdir())
        assert not any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    await confirm_finds_nothing(client, alice, up, len(data))


@pytest.mark.local_blobs  # the engine's own route and its tmp dir; on S3 the engine never sees the bytes
async def test_client_disconnect_mid_put_leaves_nothing_behind(client, alice, dataset, cfg, service):
    import trio

    data = b"i" * (4 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    url = urlsplit(up["upload_url"])
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    head = (f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    await stream.send_all(head + data[: MiB + 7])
    await trio.sleep(0.2)  # let the server start writing
    await stream.aclose()
    tmp = cfg.data_dir / "blobs" / "tmp"
    with trio.fail_after(10):
        while any(tmp.iterdir()):
            await trio.sleep(0.05)
    assert not any((cfg.data_dir / "blobs" / "staging").rglob("*.*"))
    assert await service.services.store.list_parts(up["upload_id"]) == []


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"filename": "/"}, 400, "filename"),
        ({"filename": "\x00\x01"}, 400, "filename"),
        ({"filename": ""}, 400, "filename"),
        ({"content_type": "application/x-msdownload"}, 400, "content_type"),
        ({"content_type": "video/mp4"}, 400, "content_type"),
        ({"size_bytes": 0}, 400, "size_bytes"),
        ({"size_bytes": -5}, 400, "size_bytes"),
        ({"size_bytes": "10"}, 400, "size_bytes"),
        ({"size_bytes": 6 * 1024**4}, 413, "size_bytes"),
        ({"checksum_sha256": "abc"}, 400, "checksum_sha256"),
        ({"checksum_sha256": "z" * 64}, 400, "checksum_sha256"),
        ({"colour": "red"}, 400, "colour"),
    ],
)
async def test_bad_initiate_fields(client, alice, dataset, fields, status, field):
    body = {"filename": "a.txt", "content_type": "text/plain", "size_bytes": 10, **fields}
    r = await client.post(f"/v1/datasets/{dataset['dataset_id']}/objects/upload", headers=alice.headers, json=body)
    assert r.status_code == status, r.text
    assert field in error_of(r)["details"]["fields"]


async def test_filename_keeps_only_the_name(client, alice, dataset):
    data = b"j" * 10
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data, filename="C:\\Users\\ann\\../docs/rep\x07ort.txt")).json()["data"]
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["original_filename"] == "report.txt"


async def test_uploads_path_needs_a_known_dataset(client, alice):
    body = {"filename": "a.txt", "content_type": "text/plain", "size_bytes": 10}
    r = await client.post("/v1/uploads", headers=alice.headers, json=body)
    assert r.status_code == 400 and "dataset_id" in error_of(r)["details"]["fields"]
    r = await client.post("/v1/uploads", headers=alice.headers, json={**body, "dataset_id": "dset_nope"})
    assert r.status_code == 404


async def test_paused_dataset_refuses_uploads(client, alice, dataset):
    await client.patch(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers, json={"status": "paused"})
    r = await initiate(client, alice.headers, dataset["dataset_id"], b"x")
    assert r.status_code == 409 and error_of(r)["details"]["current_status"] == "paused"


async def test_confirming_twice_is_harmless(client, alice, dataset):
    data = b"k" * 10
    up = await upload(client, alice.headers, dataset["dataset_id"], data)
    again = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=alice.headers)
    also = await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=alice.headers)
    assert again.status_code == also.status_code == 200
    assert again.json()["data"] == also.json()["data"]
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["object_count"] == 1 and ds["total_bytes"] == 10


async def test_scope_objects_write_is_required(client, alice, dataset):
    reader = {"X-API-Key": (await create_key(client, alice.headers, ["datasets:read"]))["key"]}
    writer = {"X-API-Key": (await create_key(client, alice.headers, ["objects:write", "datasets:read"]))["key"]}
    data = b"l" * 10
    assert (await initiate(client, reader, dataset["dataset_id"], data)).status_code == 403
    up = (await initiate(client, writer, dataset["dataset_id"], data)).json()["data"]
    await client.put(up["upload_url"], content=data)
    assert (await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=reader)).status_code == 403
    assert (await client.post(f"/v1/uploads/{up['upload_id']}/complete", headers=reader)).status_code == 403
    assert (await client.delete(f"/v1/objects/{up['object_id']}", headers=reader)).status_code == 403
    assert (await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=writer)).status_code == 200
    assert (await client.get(f"/v1/objects/{up['object_id']}", headers=reader)).status_code == 200


async def test_another_tenants_ids_are_404(client, alice, bob, dataset):
    data = b"m" * 10
    up = await upload(client, alice.headers, dataset["dataset_id"], data)
    body = {"filename": "a.txt", "content_type": "text/plain", "size_bytes": 10}
    checks = [
        ("POST", f"/v1/datasets/{dataset['dataset_id']}/objects/upload", body),
        ("POST", "/v1/uploads", {**body, "dataset_id": dataset["dataset_id"]}),
        ("POST", f"/v1/objects/{up['object_id']}/confirm", None),
        ("POST", f"/v1/uploads/{up['upload_id']}/complete", None),
        ("GET", f"/v1/objects/{up['object_id']}", None),
        ("GET", f"/v1/objects/{up['object_id']}/download-url", None),
        ("GET", f"/v1/datasets/{dataset['dataset_id']}/objects", None),
        ("DELETE", f"/v1/objects/{up['object_id']}", None),
    ]
    for method, path, json in checks:
        r = await client.request(method, path, headers=bob.headers, json=json)
        assert r.status_code == 404, (method, path, r.text)
    assert (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]["status"] == "uploaded"


async def test_allow_list_key_cannot_touch_other_datasets_objects(client, alice, dataset):
    other = await create_dataset(client, alice.headers, name="other")
    up = await upload(client, alice.headers, other["dataset_id"], b"n" * 10)
    key = {"X-API-Key": (await create_key(client, alice.headers, ["datasets:read", "objects:write"],
                                          dataset_access_mode="allow_list", dataset_ids=[dataset["dataset_id"]]))["key"]}
    assert (await client.get(f"/v1/objects/{up['object_id']}", headers=key)).status_code == 403
    assert (await initiate(client, key, other["dataset_id"], b"x")).status_code == 403
    assert (await initiate(client, key, dataset["dataset_id"], b"x")).status_code == 201


async def test_refused_large_put_is_answered_not_left_hanging(client, alice, dataset):
    """A PUT refused before its body is read (here: 16 MiB on a tampered URL) still gets its 403."""
    import trio

    data = os.urandom(16 * MiB)
    up = (await initiate(client, alice.headers, dataset["dataset_id"], data)).json()["data"]
    url = up["parts"][0]["upload_url"]
    tampered = _alter(url, **{"X-Amz-Signature": "f" * 64}) if S3 else _alter(url, signature="f" * 64)
    assert tampered != url
    with trio.fail_after(20):
        r = await client.put(tampered, content=data)
    assert r.status_code == 403
    with trio.fail_after(20):  # and the server is fine afterwards
        assert (await client.get("/v1/health")).status_code == 200
