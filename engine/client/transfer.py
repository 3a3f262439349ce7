"""Moving bytes: resumable uploads (initiate → PUT parts in parallel → confirm) and downloads.

A resumable upload keeps a small state file (see :class:`ResumeStore`) keyed by server,
dataset, absolute path, size and mtime. It is written before the initiation and after each
accepted part, and holds the ``Idempotency-Key`` of the initiation and the ETags of the
parts the server accepted. Running the same upload again re-initiates with the same key —
the server answers the same object and upload, with fresh URLs if the old ones expired —
and sends only the parts missing from the state. The state is removed once confirmed, and
when the server refuses the upload outright (a 4xx on the initiation: the dataset does not
take the type, is paused, …), so nothing is left to resume.

With ``skip_existing`` a file whose name and SHA-256 the dataset already holds (an object
whose bytes were verified and are still kept: not failed, deleted, rejected or expired) is
not uploaded again; its result says ``skipped`` and names that object.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import trio

from engine.client.errors import (
    ApiError,
    ConnectionFailed,
    Forbidden,
    IdempotencyInProgress,
    IptoError,
    Unprocessable,
    error_from_response,
)
from engine.client.models import UploadTarget

if TYPE_CHECKING:
    from engine.client.aio import AsyncClient

CHUNK = 1024 * 1024


class UploadEvents(Protocol):
    """Progress callbacks (all optional to act on); ``advance`` may be negative on a retry."""

    def hashing(self, path: Path, size: int) -> None: ...
    def started(self, path: Path, size: int, parts_total: int, parts_done: int) -> None: ...
    def advance(self, path: Path, nbytes: int) -> None: ...
    def finished(self, path: Path, result: UploadResult) -> None: ...


class _NoEvents:
    def hashing(self, path: Path, size: int) -> None:
        pass

    def started(self, path: Path, size: int, parts_total: int, parts_done: int) -> None:
        pass

    def advance(self, path: Path, nbytes: int) -> None:
        pass

    def finished(self, path: Path, result: UploadResult) -> None:
        pass


@dataclass
class UploadResult:
    path: str
    size_bytes: int
    status: str = "failed"  # the object's status once confirmed ("uploaded"), "skipped" (already there), else "failed"
    object_id: str | None = None
    upload_id: str | None = None
    checksum_sha256: str | None = None
    content_type: str | None = None
    strategy: str | None = None
    parts_total: int = 0
    parts_sent: int = 0  # PUT in this run (the others were accepted by an earlier run)
    resumed: bool = False
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResumeState:
    path: str
    dataset_id: str
    size: int
    mtime_ns: int
    sha256: str
    content_type: str
    idempotency_key: str
    object_id: str | None = None
    upload_id: str | None = None
    parts: dict[str, str] = field(default_factory=dict)  # part number (as str, JSON keys) → ETag
    batch_key: str | None = None  # initiated in a batch (engine.client.bulk_transfer): its Idempotency-Key
    batch_index: int | None = None  # and this file's place in it


class ResumeStore:
    """One JSON file (0600) per unfinished upload in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _file(self, server: str, dataset_id: str, path: Path, st: os.stat_result) -> Path:
        ident = json.dumps([server, dataset_id, str(path), st.st_size, st.st_mtime_ns])
        return self.directory / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.json"

    def load(self, server: str, dataset_id: str, path: Path, st: os.stat_result) -> tuple[Path, ResumeState | None]:
        file = self._file(server, dataset_id, path, st)
        try:
            state = ResumeState(**json.loads(file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return file, None
        return file, state

    @staticmethod
    def save(file: Path, state: ResumeState) -> None:
        """Atomically (write a temporary file, rename), so a kill never leaves half a state."""
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(state), fh)
        os.replace(tmp, file)

    @staticmethod
    def drop(file: Path) -> None:
        file.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def file_stream(path: Path, offset: int, length: int, on_chunk: Any = None) -> AsyncIterator[bytes]:
    """``length`` bytes of ``path`` from ``offset``, read 1 MiB at a time in a worker thread."""
    async with await trio.open_file(path, "rb") as fh:
        await fh.seek(offset)
        left = length
        while left > 0:
            chunk = await fh.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{path} is shorter than expected (changed while uploading?)")
            left -= len(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
            yield chunk


def refused(exc: ApiError) -> bool:
    """The server turned the request down for good (a 4xx), not "later" (408, 429, a request
    with the same Idempotency-Key still running)."""
    return 400 <= exc.status < 500 and exc.status not in (408, 429) and not isinstance(exc, IdempotencyInProgress)


# What an object must be to count as "already in the dataset": its bytes verified and kept.
_GONE_STATUSES, _GONE_REVIEW_STATES = ("failed", "deleted"), ("rejected", "expired")


async def find_existing(client: AsyncClient, dataset_id: str, filename: str, sha256: str) -> dict[str, Any] | None:
    """An object of the dataset named ``filename`` whose verified bytes have ``sha256``, if any."""
    async for obj in client.iter_objects(dataset_id, checksum_sha256=sha256):
        if (obj["original_filename"] == filename and obj["status"] not in _GONE_STATUSES
                and obj["review_state"] not in _GONE_REVIEW_STATES):
            return dict(obj)
    return None


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        return {"code": exc.code, "message": exc.message, "status": exc.status, "request_id": exc.request_id, "details": exc.details}
    return {"code": type(exc).__name__, "message": str(exc), "status": None, "request_id": None, "details": None}


def _plan(target: UploadTarget, size: int) -> list[tuple[int, str, int, int]]:
    """``(part_number, url, offset, length)`` for every part of the upload."""
    if target["upload_strategy"] != "multipart":
        assert target["upload_url"]
        return [(1, target["upload_url"], 0, size)]
    part_size = target["part_size_bytes"]
    return [
        (p["part_number"], p["upload_url"], (p["part_number"] - 1) * part_size, min(part_size, size - (p["part_number"] - 1) * part_size))
        for p in target["parts"]
    ]


async def upload_file(
    client: AsyncClient,
    dataset_id: str,
    path: Path,
    *,
    content_type: str,
    filename: str | None = None,
    resume: ResumeStore | None = None,
    parallel: int | trio.CapacityLimiter = 4,
    events: UploadEvents | None = None,
    skip_existing: bool = False,
) -> UploadResult:
    """Upload one file; never raises for a failed upload (the result carries the error).

    ``parallel`` bounds the part PUTs in flight (pass one shared limiter to bound several
    files together); ``skip_existing`` skips a file the dataset already holds (same name,
    same SHA-256)."""
    path = path.resolve()
    ev: UploadEvents = events or _NoEvents()
    limiter = parallel if isinstance(parallel, trio.CapacityLimiter) else trio.CapacityLimiter(parallel)
    result = UploadResult(str(path), 0, content_type=content_type)
    try:
        st = path.stat()
        result.size_bytes = st.st_size
        if st.st_size == 0:
            raise IptoError("empty files cannot be uploaded (size_bytes must be at least 1)")
        for fresh_start in (False, True):
            if await _upload(client, dataset_id, path, st, filename or path.name, content_type, resume, limiter, ev, result,
                             fresh_start, skip_existing):
                break
    except (IptoError, OSError) as exc:
        result.error = _error_dict(exc)
        result.status = "failed"
    ev.finished(path, result)
    return result


async def _upload(
    client: AsyncClient, dataset_id: str, path: Path, st: os.stat_result, filename: str, content_type: str,
    resume: ResumeStore | None, limiter: trio.CapacityLimiter, ev: UploadEvents, result: UploadResult, fresh_start: bool,
    skip_existing: bool,
) -> bool:
    """One try; False when the remembered upload is unusable and a fresh one should start."""
    state_file, state = resume.load(client.url, dataset_id, path, st) if resume else (None, None)
    if state is not None and fresh_start:
        state = None
    if state is None:
        ev.hashing(path, st.st_size)
        sha = await trio.to_thread.run_sync(sha256_file, path, abandon_on_cancel=True)
        if skip_existing and (existing := await find_existing(client, dataset_id, filename, sha)) is not None:
            result.status, result.object_id, result.checksum_sha256 = "skipped", existing["object_id"], sha
            return True
        state = ResumeState(str(path), dataset_id, st.st_size, st.st_mtime_ns, sha, content_type, str(uuid.uuid4()))
        if state_file is not None:
            ResumeStore.save(state_file, state)
    else:
        result.resumed = True

    def save() -> None:
        if state_file is not None:
            ResumeStore.save(state_file, state)

    async def initiate() -> UploadTarget:
        return await client.initiate_upload(
            dataset_id, filename, state.content_type, state.size, state.sha256, idempotency_key=state.idempotency_key
        )

    try:
        target = await initiate()
    except ApiError as exc:
        if state_file is not None and refused(exc):
            ResumeStore.drop(state_file)  # nothing was created: nothing to resume
        raise
    result.checksum_sha256, result.content_type = state.sha256, state.content_type
    result.object_id, result.upload_id, result.strategy = target["object_id"], target["upload_id"], target["upload_strategy"]
    if state.upload_id != target["upload_id"]:  # a new upload (the server forgot the key after 24 h)
        state.object_id, state.upload_id, state.parts = target["object_id"], target["upload_id"], {}
        save()
    if result.resumed:
        obj = await client.get_object(target["object_id"])
        if obj["status"] != "pending_upload":
            if obj["status"] in ("failed", "deleted") or obj["review_state"] in ("expired", "rejected"):
                if state_file is not None:
                    ResumeStore.drop(state_file)
                return False  # abandoned or removed meanwhile: start over with a new key
            result.status, result.parts_total = obj["status"], len(_plan(target, state.size))
            if state_file is not None:
                ResumeStore.drop(state_file)
            return True  # confirmed by the earlier run

    plan = _plan(target, state.size)
    urls = {n: url for n, url, _, _ in plan}
    result.parts_total = len(plan)
    todo = [p for p in plan if str(p[0]) not in state.parts]
    ev.started(path, state.size, len(plan), len(plan) - len(todo))
    ev.advance(path, sum(length for n, _, _, length in plan if str(n) in state.parts))
    renewal = trio.Lock()
    errors: list[BaseException] = []

    async def renew(stale: str, n: int) -> None:
        """A 403 on a part: the URLs have expired. Re-initiating (same key) renews them."""
        async with renewal:
            if urls[n] == stale:
                fresh = _plan(await initiate(), state.size)
                urls.update({pn: url for pn, url, _, _ in fresh})

    async def send_part(n: int, offset: int, length: int) -> None:
        for attempt in (1, 2):
            sent = 0

            def count(nbytes: int) -> None:
                nonlocal sent
                sent += nbytes
                ev.advance(path, nbytes)

            url = urls[n]
            try:
                etag = await client.put_presigned(url, lambda: file_stream(path, offset, length, count), length, state.content_type)
            except Forbidden:
                ev.advance(path, -sent)
                if attempt == 2:
                    raise
                await renew(url, n)
                continue
            except BaseException:
                ev.advance(path, -sent)
                raise
            state.parts[str(n)] = etag.strip('"')
            save()
            result.parts_sent += 1
            return

    pending = iter(todo)

    async def worker() -> None:
        # Parts go in order, at most ``limiter`` PUTs at once over every file sharing it.
        # One failed part does not stop the others: each accepted part is kept for a resume.
        for n, _, offset, length in pending:
            async with limiter:
                try:
                    await send_part(n, offset, length)
                except (IptoError, OSError) as exc:
                    errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(min(int(limiter.total_tokens), len(todo))):
            nursery.start_soon(worker)
    if errors:
        raise errors[0]
    try:
        if target["upload_strategy"] == "multipart":
            parts = [{"part_number": int(n), "etag": etag} for n, etag in sorted(state.parts.items(), key=lambda kv: int(kv[0]))]
            confirmed = await client.complete_upload(target["upload_id"], parts)
        else:
            confirmed = await client.confirm_upload(target["object_id"])
    except Unprocessable:
        if state_file is not None:
            ResumeStore.drop(state_file)  # the bytes are wrong: a re-run must start afresh
        raise
    result.status = confirmed["status"]
    result.checksum_sha256 = confirmed.get("checksum_sha256") or state.sha256
    if state_file is not None:
        ResumeStore.drop(state_file)
    return True


async def download_object(client: AsyncClient, object_id: str, dest: Path) -> Path:
    """Stream an object to ``dest`` (or into ``dest`` when it is a directory), verifying the
    SHA-256 the server recorded; the file appears only once complete."""
    obj = await client.get_object(object_id)
    target = await client.download_url(object_id)
    out = dest / obj["original_filename"] if dest.is_dir() else dest
    await _stream_to(client, object_id, target["download_url"], out, obj.get("checksum_sha256"))
    return out


async def retrieve_object(client: AsyncClient, object_id: str, dest: Path, **access: Any) -> tuple[Any, Path]:
    """A buyer's retrieval: ``POST /v1/objects/{id}/access`` (one charged access, retried
    under one Idempotency-Key), then its download URL streamed to ``dest`` (a file, or a
    directory to hold it under its original name) and checked against its SHA-256."""
    granted = await client.access(object_id, **access)
    out = dest / granted["original_filename"] if dest.is_dir() else dest
    await _stream_to(client, object_id, granted["download_url"], out, granted.get("checksum_sha256"))
    return granted, out


async def _stream_to(client: AsyncClient, object_id: str, url: str, out: Path, expected: str | None) -> None:
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.part")
    digest = hashlib.sha256()
    try:
        async with await trio.open_file(tmp, "wb") as fh:
            try:
                async with client.http.stream("GET", url) as response:
                    if not response.is_success:
                        await response.aread()
                        raise error_from_response(response)
                    async for chunk in response.aiter_bytes(CHUNK):
                        digest.update(chunk)
                        await fh.write(chunk)
            except httpx.TransportError as exc:
                raise ConnectionFailed(url, exc) from exc
        if expected and digest.hexdigest() != expected:
            raise IptoError(f"downloaded bytes of {object_id} do not match its SHA-256 {expected}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
