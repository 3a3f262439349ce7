"""What objects, the pipeline and imports need from a blob store, whichever backend holds the bytes.

Two backends implement :class:`BlobStore`:

* ``local`` (:class:`engine.store.blobs.local.LocalBlobStore`): files in the data dir. Presigned
  URLs point at the engine's own ``/blobs/`` routes, which receive the bytes.
* ``s3`` (:class:`engine.store.blobs.s3.S3BlobStore`): a bucket. Presigned URLs point at S3
  and the bytes never pass through the engine (``direct_uploads``): the engine learns of
  them by asking S3.

Confirming an upload is the same dance on both: :meth:`BlobStore.received_parts` (what
arrived, for the caller to check against the upload's plan and the client's ETags), then
:meth:`BlobStore.prepare` (the object as it would be: size and SHA-256), then, after the
caller verified them, :meth:`BlobStore.promote` or :meth:`BlobStore.discard`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from engine.store.records import ObjectRecord, Upload, UploadPart

COPY_CHUNK = 4 * 1024 * 1024  # bytes read, hashed and written at a time: memory stays flat


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def object_key(blob_id: str) -> str:
    return f"objects/{blob_id}"


def import_key(import_id: str) -> str:
    return f"imports/{import_id}"


@dataclass(frozen=True)
class ReceivedPart:
    """One part of an upload as the blob store holds it."""

    part_number: int
    size_bytes: int
    etag: str  # quoted, as the part's PUT answered it
    file_name: str = ""  # the local store's staging file (S3 keeps parts itself)
    sha256: str | None = None  # S3, a single part: the whole object's SHA-256 from the same HEAD as the ETag


@dataclass(frozen=True)
class Staged:
    """An object's bytes assembled and measured, not yet in place."""

    size: int
    sha256: str
    source: str | None  # where the candidate bytes are (a path or a key); None: already in place
    etag: str | None = None  # S3: the version of the bytes that was verified


@dataclass(frozen=True)
class ImportFile:
    """A record-import file that has arrived in the blob store."""

    import_id: str
    size: int
    arrived_at: datetime


class BlobStore(Protocol):
    # True where clients PUT straight to the store (S3): the engine never sees the bytes
    # arrive, so it has to look for import files itself.
    direct_uploads: bool

    async def ping(self) -> None: ...

    # -- uploads ----------------------------------------------------------------------
    async def upload_urls(self, upload: Upload, blob_id: str, size: int, sha256: str | None) -> list[str]:
        """Presigned PUT URLs, one per part in order, valid until ``upload.expires_at``."""
        ...

    async def received_parts(self, upload: Upload, blob_id: str, recorded: Sequence[UploadPart]) -> list[ReceivedPart] | None:
        """The parts received so far (``recorded``: what the engine's store noted, for a
        backend that receives through the engine); None when they were already assembled
        into the object (confirmation interrupted after that step)."""
        ...

    async def prepare(self, upload: Upload, blob_id: str, parts: Sequence[ReceivedPart]) -> Staged: ...

    async def promote(self, staged: Staged, blob_id: str) -> None: ...

    async def discard(self, staged: Staged, upload: Upload) -> None:
        """Drop a candidate that failed verification."""
        ...

    async def discard_upload(self, upload_id: str, blob_id: str, multipart: bool = True) -> None:
        """Remove whatever an upload left besides its object (parts, staging, unfinished
        multipart uploads; ``multipart=False``: the upload was a single part, so none)."""
        ...

    # -- objects ----------------------------------------------------------------------
    async def exists(self, blob_id: str) -> bool: ...

    async def delete(self, blob_id: str) -> None: ...

    async def download_url(self, obj: ObjectRecord, expires_at: datetime) -> str: ...

    def object_file(self, blob_id: str) -> AbstractAsyncContextManager[Path]:
        """The object's bytes as a local file for the duration of the block."""
        ...

    # -- record import files ----------------------------------------------------------
    async def import_url(self, import_id: str, expires_at: datetime) -> str: ...

    async def arrived_imports(self) -> list[ImportFile]:
        """Every import file present, oldest arrival first."""
        ...

    def import_file(self, import_id: str) -> AbstractAsyncContextManager[Path | None]:
        """The import's file as a local path for the block; None when it is missing."""
        ...

    async def delete_import(self, import_id: str) -> None: ...

    # -- pipeline artifacts -------------------------------------------------------------
    async def write_artifact(self, object_id: str, name: str, data: bytes) -> None: ...

    async def read_artifact(self, object_id: str, name: str) -> bytes: ...

    async def delete_artifacts(self, object_id: str) -> None: ...

    async def sweep_tmp(self, older_than_seconds: float) -> int:
        """Remove local temporary files a crash left behind; how many."""
        ...
