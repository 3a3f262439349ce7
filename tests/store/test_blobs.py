"""The blob store contract, on the local store and on S3 (SeaweedFS), then what only S3 does.

A client PUTs to the presigned URLs the store hands out. On S3 that is a real HTTP PUT.
On the local store the URL points at the engine's ``/blobs/`` route, so the test does
what that route does: check the signature, write the part to staging, and keep the part
the engine's store would record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest
import trio_asyncio

from engine.config import BlobsConfig
from engine.errors import Conflict
from engine.signing import Signer
from engine.store.blobs.base import BlobStore, ReceivedPart
from engine.store.blobs.local import LocalBlobStore
from engine.store.blobs.s3 import S3BlobStore
from engine.store.records import ObjectRecord, Upload, UploadPart
from tests.s3server import S3Server

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part but the last
_prefixes = itertools.count()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload_plan(size: int, part_size: int | None = None, ttl: timedelta = timedelta(minutes=15)) -> Upload:
    now = datetime.now(UTC)
    part_size = part_size or size
    count = -(-size // part_size)
    return Upload(id=f"upl_{os.urandom(6).hex()}", object_id=f"obj_{os.urandom(6).hex()}", tenant_id="tnt_t",
                  dataset_id="dset_d", strategy="single_part" if count == 1 else "multipart", part_size_bytes=part_size,
                  part_count=count, state="pending", expires_at=now + ttl, created_at=now)


def object_record(blob_id: str, data: bytes, mime: str = "text/plain", filename: str = "notes 1.txt") -> ObjectRecord:
    now = datetime.now(UTC)
    return ObjectRecord(id=f"obj_{os.urandom(6).hex()}", tenant_id="tnt_t", dataset_id="dset_d", blob_id=blob_id,
                        upload_id="upl_x", original_filename=filename, mime_type=mime, size_bytes=len(data),
                        declared_sha256=None, checksum_sha256=sha(data), status="uploaded", review_state="staged",
                        created_at=now, updated_at=now)


@dataclasses.dataclass
class Backend:
    """A blob store and how a client reaches its presigned URLs."""

    name: str
    blobs: BlobStore
    put: Callable[[str, bytes], Awaitable[httpx.Response]]
    get: Callable[[str], Awaitable[httpx.Response]]
    recorded: dict[str, dict[int, UploadPart]]  # local: the parts the engine's store would hold

    async def received(self, upload: Upload, blob_id: str) -> list[ReceivedPart] | None:
        return await self.blobs.received_parts(upload, blob_id, list(self.recorded.get(upload.id, {}).values()))

    async def upload(self, upload: Upload, blob_id: str, data: bytes, urls: list[str] | None = None) -> list[str]:
        """PUT every part; the ETags answered, in part order."""
        urls = urls or await self.blobs.upload_urls(upload, blob_id, len(data), None)
        etags = []
        for n, url in enumerate(urls):
            r = await self.put(url, data[n * upload.part_size_bytes:(n + 1) * upload.part_size_bytes])
            assert r.status_code == 200, r.text
            etags.append(r.headers["etag"])
        return etags


@pytest.fixture(scope="module", name="s3_server")
def _s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The suite's SeaweedFS when its backend has one, else one for this module."""
    from tests.conftest import _servers
    from tests.s3server import start_seaweedfs

    if _servers.s3 is not None:
        yield _servers.s3
        return
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


def s3_config(server: S3Server) -> BlobsConfig:
    return BlobsConfig(backend="s3", s3_endpoint=server.endpoint, s3_region=server.region, s3_bucket=server.bucket,
                       s3_access_key=server.access_key, s3_secret_key=server.secret_key,
                       s3_prefix=f"blobs-{os.getpid()}-{next(_prefixes)}/")


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture(name="s3")
async def _s3(s3_server: S3Server, tmp_path: Path) -> AsyncIterator[S3BlobStore]:
    async with trio_asyncio.open_loop(), S3BlobStore.open(s3_config(s3_server), tmp_path / "tmp") as store:
        yield store


def _local_backend(root: Path) -> Backend:
    signer = Signer(b"k" * 32, "http://engine.test")
    blobs = LocalBlobStore(root, signer)
    recorded: dict[str, dict[int, UploadPart]] = {}

    def signed(url: str) -> tuple[str, dict[str, str]]:
        parts = urlsplit(url)
        key = unquote(parts.path)[len("/blobs/"):]
        return key, dict(parse_qsl(parts.query))

    async def put(url: str, data: bytes) -> httpx.Response:  # as engine/http/blob_routes.py and Objects.receive_part
        key, query = signed(url)
        request = signer.verify("PUT", key, query)
        writer = await blobs.open_part_writer()
        await writer.write(data)
        if key.startswith("imports/"):
            await writer.commit(blobs.import_path(key[len("imports/"):]))
            return httpx.Response(200)
        upload_id = key[len("uploads/"):]
        name = blobs.new_part_name(request.part_number)
        await writer.commit(blobs.staging_path(upload_id, name))
        part = UploadPart(upload_id, request.part_number, name, writer.size, writer.sha256, datetime.now(UTC))
        recorded.setdefault(upload_id, {})[part.part_number] = part
        return httpx.Response(200, headers={"etag": part.etag})

    async def get(url: str) -> httpx.Response:
        key, query = signed(url)
        signer.verify("GET", key, query)
        return httpx.Response(200, content=blobs.object_path(key[len("objects/"):]).read_bytes())

    return Backend("local", blobs, put, get, recorded)


@pytest.fixture(name="backend", params=["local", "s3"])
async def _backend(request: pytest.FixtureRequest, tmp_path: Path, http: httpx.AsyncClient,
                   s3_server: S3Server) -> AsyncIterator[Backend]:
    if request.param == "local":
        yield _local_backend(tmp_path / "blobs")
        return
    async with trio_asyncio.open_loop(), S3BlobStore.open(s3_config(s3_server), tmp_path / "tmp") as store:
        yield Backend("s3", store, lambda url, data: http.put(url, content=data), http.get, {})


# -- the contract: both backends --------------------------------------------------------------
async def test_single_part_is_measured_promoted_served_and_deleted(backend: Backend) -> None:
    data = b"invoice 0425: total 1,234.00 EUR\n" * 300
    upload, blob_id = upload_plan(len(data)), "blob_single"
    await backend.upload(upload, blob_id, data)
    (part,) = await backend.received(upload, blob_id) or []
    assert part.part_number == 1 and part.size_bytes == len(data)
    staged = await backend.blobs.prepare(upload, blob_id, [part])
    assert (staged.size, staged.sha256) == (len(data), sha(data))
    assert not await backend.blobs.exists(blob_id)  # nothing in place before promotion
    await backend.blobs.promote(staged, blob_id)
    assert await backend.blobs.exists(blob_id)
    obj = object_record(blob_id, data)
    got = await backend.get(await backend.blobs.download_url(obj, datetime.now(UTC) + timedelta(minutes=5)))
    assert got.status_code == 200 and got.content == data
    async with backend.blobs.object_file(blob_id) as path:
        assert path.read_bytes() == data
    await backend.blobs.discard_upload(upload.id, blob_id)
    await backend.blobs.delete(blob_id)
    assert not await backend.blobs.exists(blob_id)


async def test_multipart_parts_carry_their_etags_and_assemble_in_order(backend: Backend) -> None:
    data = os.urandom(2 * PART + 12345)
    upload, blob_id = upload_plan(len(data), PART), "blob_multi"
    urls = await backend.blobs.upload_urls(upload, blob_id, len(data), None)
    assert len(urls) == 3
    answered = {}
    for n in (3, 1, 2):  # out of order
        r = await backend.put(urls[n - 1], data[(n - 1) * PART:n * PART])
        assert r.status_code == 200
        answered[n] = r.headers["etag"]
    received = {p.part_number: p for p in await backend.received(upload, blob_id) or []}
    assert {n: (p.size_bytes, p.etag) for n, p in received.items()} == {
        1: (PART, answered[1]), 2: (PART, answered[2]), 3: (12345, answered[3])}
    staged = await backend.blobs.prepare(upload, blob_id, [received[n] for n in (1, 2, 3)])
    assert (staged.size, staged.sha256) == (len(data), sha(data))
    await backend.blobs.promote(staged, blob_id)
    async with backend.blobs.object_file(blob_id) as path:
        assert sha(path.read_bytes()) == sha(data)


async def test_renewed_urls_continue_the_same_upload(backend: Backend) -> None:
    data = os.urandom(PART + 100)
    upload, blob_id = upload_plan(len(data), PART), "blob_renewed"
    first = await backend.blobs.upload_urls(upload, blob_id, len(data), None)
    assert (await backend.put(first[0], data[:PART])).status_code == 200
    renewed = dataclasses.replace(upload, expires_at=upload.expires_at + timedelta(minutes=15))
    again = await backend.blobs.upload_urls(renewed, blob_id, len(data), None)
    assert again != first
    assert (await backend.put(again[1], data[PART:])).status_code == 200
    parts = sorted(await backend.received(renewed, blob_id) or [], key=lambda p: p.part_number)
    assert [p.part_number for p in parts] == [1, 2]
    staged = await backend.blobs.prepare(renewed, blob_id, parts)
    assert staged.sha256 == sha(data)


async def test_a_discarded_candidate_and_its_upload_leave_nothing(backend: Backend) -> None:
    data = os.urandom(PART + 10)
    upload, blob_id = upload_plan(len(data), PART), "blob_discarded"
    await backend.upload(upload, blob_id, data)
    staged = await backend.blobs.prepare(upload, blob_id, sorted(await backend.received(upload, blob_id) or [],
                                                                 key=lambda p: p.part_number))
    await backend.blobs.discard(staged, upload)
    await backend.blobs.discard_upload(upload.id, blob_id)
    backend.recorded.pop(upload.id, None)  # the engine's store forgets an abandoned upload's parts
    assert not await backend.blobs.exists(blob_id)
    assert await backend.received(upload, blob_id) == []


async def test_nothing_received_is_an_empty_list(backend: Backend) -> None:
    upload = upload_plan(10)
    await backend.blobs.upload_urls(upload, "blob_none", 10, None)
    assert await backend.received(upload, "blob_none") == []


async def test_artifacts_are_overwritten_whole_and_deleted_together(backend: Backend) -> None:
    await backend.blobs.write_artifact("obj_a", "text.txt", b"first version, longer")
    await backend.blobs.write_artifact("obj_a", "text.txt", b"second")
    await backend.blobs.write_artifact("obj_a", "chunks.json", b"[]")
    await backend.blobs.write_artifact("obj_b", "text.txt", b"other object")
    assert await backend.blobs.read_artifact("obj_a", "text.txt") == b"second"
    await backend.blobs.delete_artifacts("obj_a")
    with pytest.raises(FileNotFoundError):
        await backend.blobs.read_artifact("obj_a", "chunks.json")
    assert await backend.blobs.read_artifact("obj_b", "text.txt") == b"other object"


async def test_import_files_arrive_are_read_locally_and_deleted(backend: Backend) -> None:
    data = b'{"name": "a"}\n' * 1000
    url = await backend.blobs.import_url("imp_one", datetime.now(UTC) + timedelta(minutes=15))
    assert await backend.blobs.arrived_imports() == []
    assert (await backend.put(url, data)).status_code == 200
    (arrived,) = await backend.blobs.arrived_imports()
    assert (arrived.import_id, arrived.size) == ("imp_one", len(data))
    async with backend.blobs.import_file("imp_one") as path:
        assert path is not None and path.read_bytes() == data
    await backend.blobs.delete_import("imp_one")
    assert await backend.blobs.arrived_imports() == []
    async with backend.blobs.import_file("imp_one") as path:
        assert path is None


async def test_a_missing_object_file_is_file_not_found(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError):
        async with backend.blobs.object_file("blob_never") as path:
            path.read_bytes()


async def test_ping(backend: Backend) -> None:
    await backend.blobs.ping()


# -- S3 only ------------------------------------------------------------------------------------
async def test_s3_refuses_bytes_that_break_the_declared_checksum_and_reports_the_sha256(
        s3: S3BlobStore, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"b" * 1000
    upload = upload_plan(len(data))
    (url,) = await s3.upload_urls(upload, "blob_sum", len(data), sha(data))
    assert "x-amz-checksum-sha256=" in url  # in the query string: the client sends no header of ours
    bad = await http.put(url, content=b"c" * 1000)
    assert bad.status_code == 400 and "BadDigest" in bad.text
    assert await s3.received_parts(upload, "blob_sum", []) == []
    assert (await http.put(url, content=data)).status_code == 200

    async def no_download(*_: object) -> bool:
        raise AssertionError("S3 verified the checksum: the engine must not download the object to hash it")

    monkeypatch.setattr(s3, "_stream", no_download)
    staged = await s3.prepare(upload, "blob_sum", await s3.received_parts(upload, "blob_sum", []) or [])
    assert staged.sha256 == sha(data)


async def test_s3_hashes_by_streaming_where_it_has_no_checksum(s3: S3BlobStore, http: httpx.AsyncClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No declared checksum, and multipart: the engine's own SHA-256, a block at a time."""
    data = os.urandom(2 * PART + 7)
    upload = upload_plan(len(data), PART)
    urls = await s3.upload_urls(upload, "blob_stream", len(data), sha(data))
    assert not any("checksum" in u for u in urls)  # S3 has no whole-object SHA-256 for multipart
    for n, url in enumerate(urls):
        assert (await http.put(url, content=data[n * PART:(n + 1) * PART])).status_code == 200
    blocks: list[int] = []
    real = s3._stream

    async def spy(name: str, etag: str | None, sink: Callable[[bytes], object]) -> bool:
        def counting(block: bytes) -> None:
            blocks.append(len(block))
            sink(block)

        return await real(name, etag, counting)

    monkeypatch.setattr(s3, "_stream", spy)
    staged = await s3.prepare(upload, "blob_stream", await s3.received_parts(upload, "blob_stream", []) or [])
    assert staged.sha256 == sha(data) and sum(blocks) == len(data)
    assert max(blocks) <= 4 * MiB  # never the whole object in memory


async def test_s3_refuses_wrong_lengths_altered_and_expired_urls(s3: S3BlobStore, http: httpx.AsyncClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"d" * 100
    upload = upload_plan(len(data))
    (url,) = await s3.upload_urls(upload, "blob_403", len(data), None)
    for body in (data + b"x", data[:-1]):
        assert (await http.put(url, content=body)).status_code == 403
    for altered in (url.replace("X-Amz-Expires=", "X-Amz-Expires=9"), url.replace(upload.id, upload.id + "x"),
                    url.split("?")[0], url[:-4] + "0000"):
        assert (await http.put(altered, content=data)).status_code == 403, altered
    import botocore.auth

    signed_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    stale = dataclasses.replace(upload, expires_at=datetime.now(UTC) - timedelta(minutes=59))
    with monkeypatch.context() as clock:
        clock.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: signed_at)
        (expired,) = await s3.upload_urls(stale, "blob_403", len(data), None)  # signed an hour ago, for a second
    r = await http.put(expired, content=data)
    assert r.status_code == 403 and "expired" in r.text.lower()
    assert await s3.received_parts(upload, "blob_403", []) == []


async def test_s3_a_late_put_never_changes_a_confirmed_object(s3: S3BlobStore, http: httpx.AsyncClient) -> None:
    single, multi = b"e" * 100, os.urandom(PART + 1)
    up1, up2 = upload_plan(len(single)), upload_plan(len(multi), PART)
    (url,) = await s3.upload_urls(up1, "blob_late1", len(single), None)
    part_urls = await s3.upload_urls(up2, "blob_late2", len(multi), None)
    assert (await http.put(url, content=single)).status_code == 200
    for n, part_url in enumerate(part_urls):
        assert (await http.put(part_url, content=multi[n * PART:(n + 1) * PART])).status_code == 200
    for up, blob_id in ((up1, "blob_late1"), (up2, "blob_late2")):
        parts = sorted(await s3.received_parts(up, blob_id, []) or [], key=lambda p: p.part_number)
        await s3.promote(await s3.prepare(up, blob_id, parts), blob_id)
        await s3.discard_upload(up.id, blob_id)
    assert (await http.put(url, content=b"f" * 100)).status_code == 200  # lands in staging only
    assert (await http.put(part_urls[0], content=multi[:PART])).status_code == 404  # the upload is complete
    for blob_id, data in (("blob_late1", single), ("blob_late2", multi)):
        async with s3.object_file(blob_id) as path:
            assert path.read_bytes() == data


async def test_s3_bytes_replaced_after_verification_are_not_promoted(s3: S3BlobStore, http: httpx.AsyncClient) -> None:
    upload = upload_plan(100)
    (url,) = await s3.upload_urls(upload, "blob_race", 100, None)
    assert (await http.put(url, content=b"g" * 100)).status_code == 200
    staged = await s3.prepare(upload, "blob_race", await s3.received_parts(upload, "blob_race", []) or [])
    assert (await http.put(url, content=b"h" * 100)).status_code == 200
    with pytest.raises(Conflict):
        await s3.promote(staged, "blob_race")
    assert not await s3.exists("blob_race")


async def test_s3_a_confirmation_interrupted_after_assembly_verifies_the_object(s3: S3BlobStore, http: httpx.AsyncClient) -> None:
    data = os.urandom(PART + 3)
    upload = upload_plan(len(data), PART)
    for n, url in enumerate(await s3.upload_urls(upload, "blob_resume", len(data), None)):
        assert (await http.put(url, content=data[n * PART:(n + 1) * PART])).status_code == 200
    parts = sorted(await s3.received_parts(upload, "blob_resume", []) or [], key=lambda p: p.part_number)
    await s3.prepare(upload, "blob_resume", parts)  # S3 assembled it; then the engine stopped
    assert await s3.received_parts(upload, "blob_resume", []) is None
    staged = await s3.prepare(upload, "blob_resume", [])
    assert (staged.size, staged.sha256) == (len(data), sha(data))


async def test_s3_discarding_an_upload_aborts_its_multipart_upload(s3: S3BlobStore, http: httpx.AsyncClient) -> None:
    data = os.urandom(PART + 1)
    upload = upload_plan(len(data), PART)
    urls = await s3.upload_urls(upload, "blob_abort", len(data), None)
    assert (await http.put(urls[0], content=data[:PART])).status_code == 200
    await s3.discard_upload(upload.id, "blob_abort")
    assert (await http.put(urls[1], content=data[PART:])).status_code == 404
    assert await s3.received_parts(upload, "blob_abort", []) == []


async def test_s3_download_urls_name_the_file_and_die_with_the_object(s3: S3BlobStore, http: httpx.AsyncClient) -> None:
    data = b"%PDF-1.4 pretend\n"
    upload = upload_plan(len(data))
    (url,) = await s3.upload_urls(upload, "blob_dl", len(data), None)
    assert (await http.put(url, content=data)).status_code == 200
    await s3.promote(await s3.prepare(upload, "blob_dl", await s3.received_parts(upload, "blob_dl", []) or []), "blob_dl")
    obj = object_record("blob_dl", data, mime="application/pdf", filename="Q1 report.pdf")
    download = await s3.download_url(obj, datetime.now(UTC) + timedelta(minutes=5))
    got = await http.get(download)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"] == "attachment; filename*=UTF-8''Q1%20report.pdf"
    assert (await http.get(download.split("?")[0])).status_code == 403  # anonymous: refused
    await s3.delete("blob_dl")
    assert (await http.get(download)).status_code == 404


async def test_s3_local_copies_are_removed_after_use(s3: S3BlobStore, http: httpx.AsyncClient) -> None:
    url = await s3.import_url("imp_tmp", datetime.now(UTC) + timedelta(minutes=1))
    assert (await http.put(url, content=b"{}\n")).status_code == 200
    async with s3.import_file("imp_tmp") as path:
        assert path is not None and path.parent == s3.tmp_dir
    assert list(s3.tmp_dir.iterdir()) == []
