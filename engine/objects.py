"""Objects and their uploads (seeds 000 and 001): initiate, receive, confirm, delete.

An upload is a session with presigned URLs: one (``single_part``) or one per part
(``multipart``, above ``uploads.multipart_threshold_bytes``). Bytes land in staging (the
local store's, through the engine; or S3, directly); a confirmation checks the parts
against the plan and the client's ETags, verifies the declared size and SHA-256, then
promotes the bytes to an immutable blob and counts the object in its dataset, all or
nothing. Work on one upload (receiving a part, confirming) is serialised by a lock per
object (an object has one upload), so a part arriving during a confirmation can never
change what the confirmation verified (S3 gives the same guarantee by the ETag it verified, see
:mod:`engine.store.blobs.s3`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from engine.actors.messages import Message
from engine.actors.supervisor import Supervisor
from engine.auth import Principal
from engine.config import UploadsConfig
from engine.datasets import Datasets, check_transition
from engine.errors import (
    ChecksumMismatch,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    SizeMismatch,
    Unprocessable,
)
from engine.ids import new_id, utcnow
from engine.keyed_locks import KeyedLocks
from engine.metrics import NO_METRICS, MetricsSink
from engine.pagination import Page, page_of
from engine.store.base import Store
from engine.store.blobs.base import BlobStore, ReceivedPart, Staged
from engine.store.blobs.local import local_store
from engine.store.records import Dataset, ObjectRecord, Upload, UploadPart

log = structlog.get_logger(__name__)

MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * 1024 * 1024
MiB = 1024 * 1024
OBJECT_STATUSES = ("pending_upload", "uploaded", "normalizing", "extracting", "enriching", "indexing", "active", "failed", "deleted")
REVIEW_STATES = ("staged", "under_review", "approved", "rejected", "expired")

_TEXT = ("text/plain", "text/markdown", "text/html", "text/csv", "application/json", "application/x-ndjson")
_OFFICE = (
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/rtf",
)
_IMAGES = ("image/jpeg", "image/png", "image/tiff", "image/gif", "image/webp")
_AUDIO = ("audio/mpeg", "audio/wav", "audio/x-wav", "audio/flac", "audio/ogg", "audio/mp4", "audio/webm")
_VIDEO = ("video/mp4", "video/quicktime", "video/webm", "video/x-matroska")
_TABULAR = (
    "text/csv",
    "application/x-ndjson",
    "application/json",
    "application/vnd.apache.parquet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
)
# What a dataset of each source_modality accepts (documents include scans, for OCR).
ALLOWED_TYPES: Mapping[str, frozenset[str]] = {
    "document": frozenset(_OFFICE + _TEXT + ("image/png", "image/jpeg", "image/tiff")),
    "text": frozenset(_TEXT),
    "image": frozenset(_IMAGES),
    "audio": frozenset(_AUDIO),
    "video": frozenset(_VIDEO),
    "tabular": frozenset(_TABULAR),
    "mixed": frozenset(_OFFICE + _TEXT + _IMAGES + _AUDIO + _VIDEO + _TABULAR),
}
# An object's own modality, from its MIME type (the review queue filters on it). Each type
# has exactly one: CSV and JSON are tabular here, though text datasets accept them too.
OBJECT_MODALITIES: Mapping[str, tuple[str, ...]] = {
    "document": _OFFICE,
    "text": tuple(t for t in _TEXT if t not in _TABULAR),
    "image": _IMAGES,
    "audio": _AUDIO,
    "video": _VIDEO,
    "tabular": _TABULAR,
}


def modality_of(mime_type: str) -> str | None:
    return next((m for m, types in OBJECT_MODALITIES.items() if mime_type in types), None)


_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def clean_filename(raw: str) -> str:
    """The file's own name: directories and control characters are not kept."""
    name = re.split(r"[/\\]", raw)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", "..") or len(name.encode()) > 255:
        raise InvalidRequest("filename must name a file (at most 255 bytes)", {"fields": {"filename": "not a usable file name"}})
    return name


def plan_parts(size: int, cfg: UploadsConfig) -> tuple[str, int, int]:
    """``(strategy, part_size, part_count)`` for an object of ``size`` bytes."""
    if size <= cfg.multipart_threshold_bytes:
        return "single_part", size, 1
    part_size = max(cfg.part_size_bytes, MIN_PART_SIZE)
    if math.ceil(size / part_size) > MAX_PARTS:
        part_size = math.ceil(size / MAX_PARTS / MiB) * MiB
    return "multipart", part_size, math.ceil(size / part_size)


def plan_upload(tenant_id: str, ds: Dataset, fields: Mapping[str, Any], cfg: UploadsConfig, now: datetime) -> tuple[ObjectRecord, Upload]:
    """A new object of ``ds`` and its upload session, as an initiation (single or batch item) asks:
    its file name, type and size checked against the dataset and the limits."""
    filename = clean_filename(fields["filename"])
    mime = fields["content_type"].split(";")[0].strip().lower()
    if mime not in ALLOWED_TYPES[ds.source_modality]:
        raise InvalidRequest(
            f"content type {mime} is not accepted by a {ds.source_modality} dataset",
            {"fields": {"content_type": f"allowed: {', '.join(sorted(ALLOWED_TYPES[ds.source_modality]))}"}},
        )
    size = fields["size_bytes"]
    if size > cfg.max_size_bytes:
        raise PayloadTooLarge(
            f"size_bytes exceeds the maximum object size of {cfg.max_size_bytes} bytes",
            {"fields": {"size_bytes": f"at most {cfg.max_size_bytes}"}},
        )
    declared = fields.get("checksum_sha256")
    strategy, part_size, part_count = plan_parts(size, cfg)
    obj = ObjectRecord(
        id=new_id("obj"), tenant_id=tenant_id, dataset_id=ds.id, blob_id=new_id("blob"),
        upload_id=new_id("upl"), original_filename=filename, mime_type=mime, size_bytes=size,
        declared_sha256=declared.lower() if declared else None, checksum_sha256=None, status="pending_upload",
        review_state="staged", created_at=now, updated_at=now,
    )
    upload = Upload(
        id=obj.upload_id, object_id=obj.id, tenant_id=obj.tenant_id, dataset_id=ds.id, strategy=strategy,
        part_size_bytes=part_size, part_count=part_count, state="pending",
        expires_at=now + timedelta(seconds=cfg.url_ttl_seconds), created_at=now,
    )
    return obj, upload


@dataclass(frozen=True)
class Initiated:
    obj: ObjectRecord
    upload: Upload
    upload_url: str | None
    parts: list[tuple[int, str]]


@dataclass(frozen=True)
class CreateObject(Message):
    obj: ObjectRecord
    upload: Upload
    flush_by_asker = True

    async def apply(self, ctx: Any) -> None:
        await ctx.store.create_object_upload(self.obj, self.upload)


@dataclass(frozen=True)
class AbandonExpiredUploads(Message):
    dataset_id: str

    async def apply(self, ctx: Any) -> int:
        return await ctx.objects.apply_abandon(self.dataset_id)


@dataclass(frozen=True)
class RenewUpload(Message):
    upload_id: str
    flush_by_asker = True

    async def apply(self, ctx: Any) -> Upload | None:
        objects: Objects = ctx.objects
        now = objects.now()
        return await ctx.store.renew_upload(self.upload_id, now + timedelta(seconds=objects.cfg.url_ttl_seconds), now)


@dataclass(frozen=True)
class FinishUpload(Message):
    object_id: str
    sha256: str
    flush_by_asker = True  # its in-process wake of the review clock reads the store, which sees the commit

    async def apply(self, ctx: Any) -> ObjectRecord:
        return await ctx.objects.apply_finish_upload(self.object_id, self.sha256)


@dataclass(frozen=True)
class DeleteObject(Message):
    tenant_id: str
    object_id: str

    async def apply(self, ctx: Any) -> ObjectRecord:
        return await ctx.objects.apply_delete(self.tenant_id, self.object_id)


class Objects:
    metrics: MetricsSink = NO_METRICS  # set by Services when metrics are on

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        datasets: Datasets,
        uploads: UploadsConfig,
        review_window_seconds: int,
        actors: Supervisor,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.actors = actors
        self.store = store
        self.blobs = blobs
        self.datasets = datasets
        self.cfg = uploads
        self.review_window = timedelta(seconds=review_window_seconds)
        self.now = now
        self._locks = KeyedLocks()
        self.on_staged: Callable[[datetime], None] | None = None  # wakes the review clock with the new deadline

    def share_locks(self, path: Path) -> None:
        """Several processes serve this engine's uploads: lock each upload in ``path`` too."""
        self._locks = KeyedLocks(path)

    # -- lookups --------------------------------------------------------------------
    async def get(self, principal: Principal, object_id: str) -> ObjectRecord:
        obj = await self.store.get_object(principal.tenant_id, object_id)
        if obj is None:
            raise NotFound("object not found")
        principal.require_dataset(obj.dataset_id)
        return obj

    async def list_for_dataset(
        self, principal: Principal, dataset_id: str, status: str | None, review_state: str | None, cursor: str | None, limit: int,
        checksum_sha256: str | None = None,
    ) -> Page[ObjectRecord]:
        ds = await self.datasets.get(principal, dataset_id)
        return await page_of(
            lambda after, n: self.store.list_objects(
                principal.tenant_id, ds.id, status=status, review_state=review_state, after=after, limit=n,
                checksum_sha256=checksum_sha256,
            ),
            cursor,
            limit,
        )

    # -- initiate -------------------------------------------------------------------
    async def initiate(self, principal: Principal, dataset_id: str, fields: Mapping[str, Any]) -> Initiated:
        ds = await self.datasets.get_accepting(principal, dataset_id, "uploads")
        obj, upload = plan_upload(principal.tenant_id, ds, fields, self.cfg, self.now())
        await self.actors.ask(ds.id, CreateObject(obj, upload))
        log.info("upload_initiated", object_id=obj.id, upload_id=upload.id, strategy=upload.strategy, size_bytes=obj.size_bytes)
        return await self._targets(obj, upload)

    async def _targets(self, obj: ObjectRecord, upload: Upload) -> Initiated:
        urls = await self.blobs.upload_urls(upload, obj.blob_id, obj.size_bytes, obj.declared_sha256)
        if upload.strategy == "single_part":
            return Initiated(obj, upload, urls[0], [])
        return Initiated(obj, upload, None, list(enumerate(urls, start=1)))

    async def renew(self, principal: Principal, object_id: str) -> Initiated | None:
        """Fresh URLs for an unconfirmed upload whose URLs expired (same object and upload).

        None when there is nothing to renew (confirmed, deleted): the caller replays."""
        obj = await self.store.get_object(principal.tenant_id, object_id)
        if obj is None or obj.uploaded_at is not None or obj.status == "deleted":
            return None
        upload = await self.actors.ask(obj.dataset_id, RenewUpload(obj.upload_id))
        if upload is None or upload.state != "pending":
            return None
        obj = await self.store.get_object(principal.tenant_id, object_id)
        if obj is None:  # its dataset was deleted meanwhile: nothing to renew, as for a deleted object
            return None
        log.info("upload_renewed", object_id=obj.id, upload_id=upload.id)
        return await self._targets(obj, upload)

    # -- receive (called by the local blob route) -------------------------------------
    async def receive_part(
        self, upload_id: str, part_number: int, declared_length: int, content_length: int | None, body: AsyncIterable[bytes]
    ) -> UploadPart:
        upload = await self.store.get_upload(upload_id)
        if upload is None or upload.state != "pending":
            raise Forbidden("this upload URL is no longer usable: the upload was completed, cancelled or abandoned")
        if not 1 <= part_number <= upload.part_count:
            raise Forbidden("this URL names no part of the upload")
        if content_length is not None and content_length > declared_length:
            raise PayloadTooLarge(f"the body is longer than the {declared_length} bytes declared", {"declared": declared_length})
        blobs = local_store(self.blobs)
        writer = await blobs.open_part_writer()
        try:
            await writer.take(body, declared_length, lambda: PayloadTooLarge(
                f"the body is longer than the {declared_length} bytes declared", {"declared": declared_length}))
            name = blobs.new_part_name(part_number)
            await writer.commit(blobs.staging_path(upload_id, name))
        except BaseException:
            await writer.abort()
            raise
        part = UploadPart(upload_id, part_number, name, writer.size, writer.sha256, self.now())
        async with self._locks.hold(upload.object_id):
            accepted, replaced = await self.store.record_part(part)
            if not accepted:
                await blobs.discard_staged_file(upload_id, name)
                raise Forbidden("this upload URL is no longer usable: the upload was completed, cancelled or abandoned")
            if replaced is not None:
                await blobs.discard_staged_file(upload_id, replaced)
        return part

    # -- confirm ----------------------------------------------------------------------
    async def confirm(self, principal: Principal, object_id: str, claimed: Sequence[Mapping[str, Any]] | None) -> ObjectRecord:
        # The lock is the object's, so nothing needs reading before it: the object, its
        # upload and parts are read once, under it, in one snapshot.
        async with self._locks.hold(object_id):
            return await self._confirm(principal, object_id, claimed)

    async def complete(self, principal: Principal, upload_id: str, claimed: Sequence[Mapping[str, Any]] | None) -> ObjectRecord:
        upload = await self.store.get_upload(upload_id)
        if upload is None or upload.tenant_id != principal.tenant_id:
            raise NotFound("upload not found")
        return await self.confirm(principal, upload.object_id, claimed)

    async def _confirm(self, principal: Principal, object_id: str, claimed: Sequence[Mapping[str, Any]] | None) -> ObjectRecord:
        view = await self.store.upload_view(principal.tenant_id, object_id)
        if view is None:
            raise NotFound("object not found")
        checked = await self.verify(principal, view, claimed)
        if isinstance(checked, ObjectRecord):
            return checked  # confirming twice is harmless
        obj, upload, _ = view
        staged = checked
        await self.blobs.promote(staged, obj.blob_id)
        confirmed: ObjectRecord = await self.actors.ask(obj.dataset_id, FinishUpload(obj.id, staged.sha256))
        await self.blobs.discard_upload(upload.id, obj.blob_id, multipart=upload.strategy == "multipart")
        log.info("upload_confirmed", object_id=obj.id, size_bytes=staged.size, sha256=staged.sha256)
        self.metrics.upload_confirmed(staged.size)
        return confirmed

    async def verify(
        self, principal: Principal, view: tuple[ObjectRecord, Upload, list[UploadPart]], claimed: Sequence[Mapping[str, Any]] | None
    ) -> Staged | ObjectRecord:
        """What a confirmation (single or batch item) checks, under the upload's lock: the object
        as already confirmed, or its bytes staged, measured and verified against the plan, the
        client's claimed parts (if any), the declared size and SHA-256."""
        obj, upload, recorded = view
        principal.require_dataset(obj.dataset_id)
        if obj.uploaded_at is not None and obj.status != "deleted":
            if obj.review_state in ("expired", "rejected"):
                raise Conflict(
                    f"this object was {obj.review_state}; upload the file again to start a new review",
                    {"status": obj.status, "review_state": obj.review_state},
                )
            return obj
        if obj.status != "pending_upload" or upload.state != "pending":
            raise Conflict(
                f"this upload cannot be confirmed: the object is {obj.status}"
                + (f" ({obj.failure_reason})" if obj.failure_reason else ""),
                {"status": obj.status, "upload_state": upload.state, "review_state": obj.review_state},
            )
        received = await self.blobs.received_parts(upload, obj.blob_id, recorded)
        # None: the parts were assembled before an interruption; the whole object is verified below.
        parts = [] if received is None else self._check_parts(obj, upload, received, claimed)
        staged = await self.blobs.prepare(upload, obj.blob_id, parts)
        if staged.size != obj.size_bytes:
            await self.blobs.discard(staged, upload)
            raise SizeMismatch(
                f"received {staged.size} bytes but size_bytes is {obj.size_bytes}",
                {"expected_size_bytes": obj.size_bytes, "received_size_bytes": staged.size},
            )
        if obj.declared_sha256 and staged.sha256 != obj.declared_sha256:
            await self.blobs.discard(staged, upload)
            raise ChecksumMismatch(
                "the SHA-256 of the received bytes does not match checksum_sha256",
                {"expected_sha256": obj.declared_sha256, "computed_sha256": staged.sha256},
            )
        return staged

    async def apply_finish_upload(self, object_id: str, sha256: str) -> ObjectRecord:
        """In the dataset's actor: the object is uploaded, staged for review, and counted."""
        now = self.now()

        def next_status(current: str) -> str:
            if current == "draft":
                check_transition("draft", "ingesting", "system")
                return "ingesting"
            return current

        deadline = now + self.review_window
        confirmed, changed = await self.store.finish_upload(object_id, sha256, now, deadline, next_status)
        if changed and self.on_staged is not None:
            self.on_staged(deadline)
        return confirmed

    @staticmethod
    def _check_parts(
        obj: ObjectRecord, upload: Upload, received: list[ReceivedPart], claimed: Sequence[Mapping[str, Any]] | None
    ) -> list[ReceivedPart]:
        by_number = {p.part_number: p for p in received}
        if upload.strategy == "single_part":
            if 1 not in by_number:
                raise SizeMismatch(
                    f"no bytes were received but size_bytes is {obj.size_bytes}",
                    {"expected_size_bytes": obj.size_bytes, "received_size_bytes": 0},
                )
            return [by_number[1]]
        if claimed is not None:
            numbers = [c["part_number"] for c in claimed]
            if len(set(numbers)) != len(numbers):
                raise InvalidRequest("parts lists a part twice", {"fields": {"parts": "duplicate part_number"}})
            unknown = [n for n in numbers if not 1 <= n <= upload.part_count]
            if unknown:
                raise Unprocessable(f"the upload has parts 1 to {upload.part_count}", {"unknown_parts": unknown})
            for c in claimed:
                part = by_number.get(c["part_number"])
                if part is not None and c["etag"].strip('"') != part.etag.strip('"'):
                    raise Unprocessable(
                        f"part {part.part_number}: the ETag does not match the bytes received",
                        {"part_number": part.part_number, "expected_etag": part.etag},
                    )
            missing_claims = [n for n in range(1, upload.part_count + 1) if n not in set(numbers)]
            if missing_claims:
                raise Unprocessable(
                    f"parts must list every part; missing {missing_claims[:20]}", {"missing_parts": missing_claims}
                )
        missing = [n for n in range(1, upload.part_count + 1) if n not in by_number]
        if missing:
            raise Unprocessable(f"parts not received: {missing[:20]}", {"missing_parts": missing})
        for n in range(1, upload.part_count + 1):
            expected = upload.part_length(n, obj.size_bytes)
            if by_number[n].size_bytes != expected:
                raise SizeMismatch(
                    f"part {n} has {by_number[n].size_bytes} bytes but must have {expected}",
                    {"part_number": n, "expected_size_bytes": expected, "received_size_bytes": by_number[n].size_bytes},
                )
        return [by_number[n] for n in range(1, upload.part_count + 1)]

    # -- delete, download ---------------------------------------------------------------
    async def delete(self, principal: Principal, object_id: str) -> ObjectRecord:
        obj = await self.get(principal, object_id)
        async with self._locks.hold(obj.id):
            deleted: ObjectRecord = await self.actors.ask(obj.dataset_id, DeleteObject(obj.tenant_id, object_id))
        return deleted

    async def apply_delete(self, tenant_id: str, object_id: str) -> ObjectRecord:
        """In the dataset's actor: tombstone, uncount, drop index entries, purge bytes."""
        result = await self.store.delete_object(tenant_id, object_id, self.now())
        if result is None:
            raise NotFound("object not found")
        await self.purge_bytes(result[0])
        deleted = await self.store.get_object(tenant_id, object_id)
        log.info("object_deleted", object_id=object_id)
        if deleted is None:  # its dataset was deleted meanwhile (every object went with it): a 404, as a read now answers
            raise NotFound("object not found")
        return deleted

    async def purge_bytes(self, obj: ObjectRecord) -> None:
        """Remove everything stored for an object: staged parts, its blob, its artifacts."""
        await self.blobs.discard_upload(obj.upload_id, obj.blob_id)
        await self.blobs.delete(obj.blob_id)
        await self.blobs.delete_artifacts(obj.id)

    async def purge_dataset(self, principal: Principal, dataset_id: str) -> int:
        """In the dataset's actor (during its deletion): every object tombstoned and purged."""
        gone = await self.store.delete_dataset_objects(principal.tenant_id, dataset_id, self.now())
        for obj, _ in gone:
            await self.purge_bytes(obj)
        return len(gone)

    async def download_url(self, principal: Principal, object_id: str) -> tuple[str, datetime]:
        obj = await self.get(principal, object_id)
        if obj.uploaded_at is None or obj.status == "deleted" or not await self.blobs.exists(obj.blob_id):
            raise Conflict(f"the object has no stored bytes ({obj.status})", {"status": obj.status})
        expires_at = self.now() + timedelta(seconds=self.cfg.url_ttl_seconds)
        return await self.blobs.download_url(obj, expires_at), expires_at

    # -- maintenance ------------------------------------------------------------------------
    async def sweep_abandoned(self) -> int:
        """Clean uploads whose URLs expired unconfirmed: bytes removed, object marked failed
        (each dataset's by its actor)."""
        swept = 0
        for dataset_id in await self.store.datasets_with_expired_uploads(self.now()):
            swept += await self.actors.ask(dataset_id, AbandonExpiredUploads(dataset_id))
        return swept

    async def apply_abandon(self, dataset_id: str) -> int:
        now = self.now()
        swept = await self.store.abandon_expired_uploads(dataset_id, now, now)
        for upload, _ in swept:
            obj = await self.store.get_object(upload.tenant_id, upload.object_id)
            if obj is not None:
                # Everything: also a blob put in place by a confirmation interrupted before it finished.
                await self.purge_bytes(obj)
            log.info("upload_abandoned", upload_id=upload.id, object_id=upload.object_id)
        return len(swept)
