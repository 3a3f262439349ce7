"""The S3 blob store (``blobs.backend = "s3"``): aiobotocore through trio-asyncio.

Every aiobotocore call runs on the asyncio loop of the ``trio_asyncio.open_loop()`` around
the service, through :func:`trio_asyncio.aio_as_trio` bound to that loop (the client's
connections belong to it), so any Trio task of the process may use the store. Every key
starts with ``blobs.s3_prefix``::

    uploads/{upload_id}            a single-part upload as PUT (staging)
    objects/{blob_id}              confirmed objects; a multipart upload is created here
    artifacts/{object_id}/{name}   pipeline artifacts
    imports/{import_id}            record-import files as PUT

Clients PUT to presigned URLs and S3 does the checking: the declared length is signed
(``Content-Length`` is a signed header), so a longer or shorter body is refused (403), as
is an expired or altered URL. Where the client declared ``checksum_sha256`` a single-part
URL also carries ``x-amz-checksum-sha256``, hoisted into the query string because the
client sends no extra headers. SeaweedFS verifies a hoisted checksum and refuses other
bytes (400 BadDigest); AWS S3 accepts the parameter without enforcing it (it verifies
checksums only as signed headers). So the engine believes only what S3 reports back:
where HEAD returns a whole-object SHA-256, S3 computed it over the stored bytes; otherwise
(AWS, no declared checksum, and every multipart upload, which S3 checksums only as a
composite of its parts) the engine streams the object once and hashes it, a block at a
time.

Single-part bytes land at a staging key and are copied into place after verification,
on the condition (``CopySourceIfMatch``) that they are still the bytes verified: a
presigned PUT URL stays usable until it expires, and a late PUT must never change a
confirmed object. A multipart upload is created at the object's key; completing it ends
the upload, so its part URLs stop working (404 NoSuchUpload). S3 keeps the parts, so the
engine lists them, with their ETags, instead of recording them, and finds the S3 upload
id with ListMultipartUploads: the engine's store needs nothing S3-specific.

Code that needs a local file (the pipeline's input, an import file) gets the object
streamed to a temporary file in ``{data_dir}/tmp`` for the duration of a block.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio
import trio_asyncio
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from engine.config import BlobsConfig
from engine.errors import Conflict, StoreError, Unprocessable
from engine.ids import utcnow
from engine.offload import Offload, to_thread
from engine.store.blobs.base import (
    COPY_CHUNK,
    ImportFile,
    ReceivedPart,
    Staged,
    import_key,
    object_key,
    upload_key,
)
from engine.store.records import ObjectRecord, Upload, UploadPart

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
DELETE_BATCH = 1000  # keys per DeleteObjects request (S3's limit)
_CHECKSUM_HEADER = "x-amz-checksum-sha256"


def _hoist_checksum(request: Any, **_: Any) -> None:
    """Presigned requests only: carry the declared SHA-256 in the query string, not as a
    signed header, so a client can PUT without sending any header of ours."""
    if request.context.get("is_presign_request") and _CHECKSUM_HEADER in request.headers:
        request.params[_CHECKSUM_HEADER] = request.headers[_CHECKSUM_HEADER]
        del request.headers[_CHECKSUM_HEADER]


def _not_found(exc: BaseException | None) -> bool:
    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 or error.get("Code") in ("NoSuchKey", "NoSuchUpload", "NoSuchBucket", "NotFound", "404")


@contextlib.contextmanager
def _translate(op: str) -> Iterator[None]:
    """Map botocore errors onto the engine's: S3 problems are store errors."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "PreconditionFailed":  # only asked for with the ETag that was verified
            raise Conflict("the uploaded bytes changed while they were being verified; confirm again") from exc
        raise StoreError(f"s3 {op}: {error.get('Code')}: {error.get('Message')}") from exc
    except (BotoCoreError, OSError) as exc:
        raise StoreError(f"s3 unavailable ({op}): {exc.__class__.__name__}: {exc}") from exc


async def _read_block(body: Any, size: int) -> bytes:
    """asyncio side: the next ``size`` bytes of a response body (fewer only at its end), so
    one bridge crossing carries a whole block."""
    block = bytearray()
    while len(block) < size and (chunk := await body.read(size - len(block))):
        block += chunk
    return bytes(block)


async def _presign_all(client: Any, op: str, params: list[dict[str, Any]], seconds: int) -> list[str]:
    """asyncio side: presigned URLs for every parameter set, in one bridge crossing."""
    return [await client.generate_presigned_url(op, Params=p, ExpiresIn=seconds) for p in params]


def _full_object_sha256(head: dict[str, Any]) -> str | None:
    """The SHA-256 S3 computed over the whole stored object, if it reports one (hex)."""
    value = head.get("ChecksumSHA256")
    if not value or "-" in value or head.get("ChecksumType") == "COMPOSITE":
        return None
    return base64.b64decode(value).hex()


class S3BlobStore:
    direct_uploads = True

    def __init__(self, client: Any, loop: Any, cfg: BlobsConfig, tmp_dir: Path, now: Callable[[], datetime] = utcnow,
                 offload: Offload = to_thread) -> None:
        self._s3 = client
        self._loop = loop
        self.bucket = cfg.s3_bucket
        self.prefix = cfg.s3_prefix
        self.tmp_dir = tmp_dir
        self.now = now
        self._offload = offload
        tmp_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, cfg: BlobsConfig, tmp_dir: Path, now: Callable[[], datetime] = utcnow,
                   offload: Offload = to_thread) -> AsyncIterator[S3BlobStore]:
        """The store with its client, for the block. Needs ``trio_asyncio.open_loop()`` around it."""
        from aiobotocore.session import get_session

        config = BotoConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if cfg.s3_endpoint else "auto"},
            # S3-compatible servers differ in which checksums they take: send one only where
            # an operation requires it (the declared SHA-256 is set explicitly).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=32,
        )
        creator = get_session().create_client(
            "s3", endpoint_url=cfg.s3_endpoint or None, region_name=cfg.s3_region, config=config,
            aws_access_key_id=cfg.s3_access_key or None, aws_secret_access_key=cfg.s3_secret_key or None,
        )
        loop = trio_asyncio.current_loop.get()
        if loop is None:
            raise RuntimeError("the S3 blob store needs trio_asyncio.open_loop() around it")
        client = await trio_asyncio.aio_as_trio(creator.__aenter__, loop=loop)()
        try:
            client.meta.events.register("before-sign.s3", _hoist_checksum)
            store = cls(client, loop, cfg, tmp_dir, now, offload)
            if cfg.s3_create_bucket:
                await store._ensure_bucket(cfg.s3_region)
            yield store
        finally:
            with trio.CancelScope(shield=True):  # a cancelled service still closes its connections
                await trio_asyncio.aio_as_trio(creator.__aexit__, loop=loop)(None, None, None)

    # -- calls ------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return self.prefix + name

    def _aio(self, fn: Callable[..., Any]) -> Any:
        """``fn`` (asyncio-flavoured) callable from Trio, on the client's loop."""
        return trio_asyncio.aio_as_trio(fn, loop=self._loop)

    async def _call(self, op: str, **params: Any) -> dict[str, Any]:
        with _translate(op):
            result: dict[str, Any] = await self._aio(getattr(self._s3, op))(Bucket=self.bucket, **params)
        return result

    async def _call_or_none(self, op: str, **params: Any) -> dict[str, Any] | None:
        """:meth:`_call`, or None where S3 says the key or upload does not exist."""
        try:
            return await self._call(op, **params)
        except StoreError as exc:
            if _not_found(exc.__cause__):
                return None
            raise

    async def _presign(self, op: str, params: list[dict[str, Any]], expires_at: datetime) -> list[str]:
        seconds = min(max(int((expires_at - self.now()).total_seconds()), 1), MAX_PRESIGN_SECONDS)
        with _translate(f"presign {op}"):
            urls: list[str] = await self._aio(_presign_all)(
                self._s3, op, [{"Bucket": self.bucket, **p} for p in params], seconds)
        return urls

    async def _ensure_bucket(self, region: str) -> None:
        if await self._call_or_none("head_bucket") is not None:
            return
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        await self._call("create_bucket", **location)

    async def ping(self) -> None:
        await self._call("head_bucket")

    async def _head(self, name: str) -> dict[str, Any] | None:
        return await self._call_or_none("head_object", Key=self._key(name), ChecksumMode="ENABLED")

    async def _stream(self, name: str, etag: str | None, sink: Callable[[bytes], object]) -> bool:
        """Feed the object's bytes to ``sink`` (on a worker thread) a block at a time;
        False when there is no such object. With ``etag``, only those very bytes."""
        response = await self._call_or_none("get_object", Key=self._key(name), **({"IfMatch": etag} if etag else {}))
        if response is None:
            return False
        body = response["Body"]
        try:
            while True:
                with _translate("get_object"):
                    block = await self._aio(_read_block)(body, COPY_CHUNK)
                if not block:
                    break
                await self._offload(sink, block)
        finally:
            with trio.CancelScope(shield=True):
                await self._aio(body.aclose)()
        return True

    async def _delete_prefix(self, name: str) -> None:
        while listed := (await self._call("list_objects_v2", Prefix=self._key(name), MaxKeys=DELETE_BATCH)).get("Contents"):
            done = await self._call("delete_objects", Delete={"Objects": [{"Key": o["Key"]} for o in listed], "Quiet": True})
            if done.get("Errors"):
                first = done["Errors"][0]
                raise StoreError(f"s3 delete_objects: {first.get('Code')}: {first.get('Message')} ({first.get('Key')})")

    # -- uploads ----------------------------------------------------------------------
    async def _multipart_ids(self, blob_id: str) -> list[str]:
        """The unfinished S3 multipart uploads at the object's key, oldest first."""
        key = self._key(object_key(blob_id))
        listed = await self._call("list_multipart_uploads", Prefix=key)
        uploads = sorted((u["Initiated"], u["UploadId"]) for u in listed.get("Uploads", []) if u["Key"] == key)
        return [upload_id for _, upload_id in uploads]

    async def upload_urls(self, upload: Upload, blob_id: str, size: int, sha256: str | None) -> list[str]:
        if upload.strategy == "single_part":
            params: dict[str, Any] = {"Key": self._key(upload_key(upload.id)), "ContentLength": size}
            if sha256:
                params["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
            return await self._presign("put_object", [params], upload.expires_at)
        key = self._key(object_key(blob_id))
        existing = await self._multipart_ids(blob_id)  # fresh URLs for an upload keep its S3 upload
        s3_upload = existing[0] if existing else (await self._call("create_multipart_upload", Key=key))["UploadId"]
        parts = [{"Key": key, "UploadId": s3_upload, "PartNumber": n, "ContentLength": upload.part_length(n, size)}
                 for n in range(1, upload.part_count + 1)]
        return await self._presign("upload_part", parts, upload.expires_at)

    async def received_parts(self, upload: Upload, blob_id: str, recorded: Sequence[UploadPart]) -> list[ReceivedPart] | None:
        """What S3 holds (the engine records nothing: the bytes never pass through it)."""
        if upload.strategy == "single_part":
            head = await self._head(upload_key(upload.id))
            return [] if head is None else [ReceivedPart(1, head["ContentLength"], head["ETag"], sha256=_full_object_sha256(head))]
        existing = await self._multipart_ids(blob_id)
        if not existing:
            return None if await self.exists(blob_id) else []
        parts: list[ReceivedPart] = []
        marker = 0
        while True:
            page = await self._call_or_none("list_parts", Key=self._key(object_key(blob_id)), UploadId=existing[0],
                                            PartNumberMarker=marker)
            if page is None:
                return []  # completed or aborted meanwhile
            parts += [ReceivedPart(p["PartNumber"], p["Size"], p["ETag"]) for p in page.get("Parts", [])]
            if not page.get("IsTruncated"):
                return parts
            marker = page["NextPartNumberMarker"]

    async def prepare(self, upload: Upload, blob_id: str, parts: Sequence[ReceivedPart]) -> Staged:
        """The object as it would be. Multipart: S3 assembles the checked parts first."""
        if upload.strategy == "single_part":
            if len(parts) == 1 and parts[0].sha256 is not None:
                # Measured by received_parts' HEAD already; the ETag pins those very bytes for promote.
                return Staged(parts[0].size_bytes, parts[0].sha256, upload_key(upload.id), parts[0].etag)
            return await self._measure(upload_key(upload.id))
        existing = await self._multipart_ids(blob_id)
        if existing:
            await self._call("complete_multipart_upload", Key=self._key(object_key(blob_id)), UploadId=existing[0],
                             MultipartUpload={"Parts": [{"PartNumber": p.part_number, "ETag": p.etag} for p in parts]})
        return await self._measure(object_key(blob_id))

    async def _measure(self, name: str) -> Staged:
        head = await self._head(name)
        if head is None:
            raise Unprocessable("the uploaded bytes are missing; upload the file again", {"part_number": 1})
        etag = head["ETag"]
        sha256 = _full_object_sha256(head)
        if sha256 is None:
            digest = hashlib.sha256()
            if not await self._stream(name, etag, digest.update):
                raise Unprocessable("the uploaded bytes are missing; upload the file again", {"part_number": 1})
            sha256 = digest.hexdigest()
        return Staged(head["ContentLength"], sha256, name, etag)

    async def promote(self, staged: Staged, blob_id: str) -> None:
        final = object_key(blob_id)
        if staged.source is None or staged.source == final:
            return
        await self._call("copy_object", Key=self._key(final), CopySourceIfMatch=staged.etag,
                         CopySource={"Bucket": self.bucket, "Key": self._key(staged.source)})

    async def discard(self, staged: Staged, upload: Upload) -> None:
        """Remove the candidate: the staged single part, or the assembled multipart object
        (its parts went into it, so the file is uploaded again)."""
        if staged.source is not None:
            await self._call("delete_object", Key=self._key(staged.source))

    async def discard_upload(self, upload_id: str, blob_id: str, multipart: bool = True) -> None:
        await self._call("delete_object", Key=self._key(upload_key(upload_id)))
        if not multipart:
            return
        for s3_upload in await self._multipart_ids(blob_id):
            await self._call_or_none("abort_multipart_upload", Key=self._key(object_key(blob_id)), UploadId=s3_upload)

    # -- objects ----------------------------------------------------------------------
    async def exists(self, blob_id: str) -> bool:
        return await self._head(object_key(blob_id)) is not None

    async def delete(self, blob_id: str) -> None:
        await self._call("delete_object", Key=self._key(object_key(blob_id)))

    async def download_url(self, obj: ObjectRecord, expires_at: datetime) -> str:
        params = {"Key": self._key(object_key(obj.blob_id)), "ResponseContentType": obj.mime_type,
                  "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(obj.original_filename)}"}
        (url,) = await self._presign("get_object", [params], expires_at)
        return url

    @contextlib.asynccontextmanager
    async def _local_copy(self, name: str) -> AsyncIterator[Path | None]:
        """The object streamed to a temporary file (removed after the block); None if missing."""
        path = self.tmp_dir / f"get-{secrets.token_hex(8)}"
        try:
            fh = await self._offload(open, path, "wb")
            try:
                found = await self._stream(name, None, fh.write)
            finally:
                await self._offload(fh.close)
            yield path if found else None
        finally:
            with trio.CancelScope(shield=True):
                await self._offload(lambda: path.unlink(missing_ok=True))

    @contextlib.asynccontextmanager
    async def object_file(self, blob_id: str) -> AsyncIterator[Path]:
        async with self._local_copy(object_key(blob_id)) as path:
            if path is None:
                raise FileNotFoundError(f"the bytes of {blob_id} are missing from the bucket")
            yield path

    # -- record import files ------------------------------------------------------------
    async def import_url(self, import_id: str, expires_at: datetime) -> str:
        (url,) = await self._presign("put_object", [{"Key": self._key(import_key(import_id))}], expires_at)
        return url

    async def arrived_imports(self) -> list[ImportFile]:
        """Every file under ``imports/``, by S3's LastModified (whole seconds), then id."""
        found: list[ImportFile] = []
        start = self._key(import_key(""))
        token: dict[str, str] = {}
        while True:
            page = await self._call("list_objects_v2", Prefix=start, **token)
            found += [ImportFile(o["Key"][len(start):], o["Size"], o["LastModified"]) for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(found, key=lambda f: (f.arrived_at, f.import_id))
            token = {"ContinuationToken": page["NextContinuationToken"]}

    @contextlib.asynccontextmanager
    async def import_file(self, import_id: str) -> AsyncIterator[Path | None]:
        async with self._local_copy(import_key(import_id)) as path:
            yield path

    async def delete_import(self, import_id: str) -> None:
        await self._call("delete_object", Key=self._key(import_key(import_id)))

    # -- pipeline artifacts ---------------------------------------------------------------
    async def write_artifact(self, object_id: str, name: str, data: bytes) -> None:
        await self._call("put_object", Key=self._key(f"artifacts/{object_id}/{name}"), Body=data)

    async def read_artifact(self, object_id: str, name: str) -> bytes:
        chunks: list[bytes] = []
        if not await self._stream(f"artifacts/{object_id}/{name}", None, chunks.append):
            raise FileNotFoundError(f"artifact {name} of {object_id} is missing from the bucket")
        return b"".join(chunks)

    async def delete_artifacts(self, object_id: str) -> None:
        await self._delete_prefix(f"artifacts/{object_id}/")

    async def sweep_tmp(self, older_than_seconds: float) -> int:
        """Remove downloads a crash left in the temporary dir."""

        def sweep() -> int:
            cutoff = time.time() - older_than_seconds
            removed = 0
            for entry in os.scandir(self.tmp_dir):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
            return removed

        return await self._offload(sweep)
