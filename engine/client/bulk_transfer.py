"""Many files into one dataset with the batch routes: batch initiate → PUT parts → batch confirm.

What :func:`engine.client.transfer.upload_file` does for one file, for a folder's worth:
files are hashed (and skipped when the dataset already holds the same name and SHA-256,
unless ``skip_existing`` is off), initiated ``batch_size`` at a time in one request each,
their parts PUT in parallel (one shared limit over every file), and confirmed in one
request per batch. Each file still has its own result and its own error.

Resuming works as for one file. Before a batch is sent, the request (its files and its
``Idempotency-Key``) is kept in ``<resume dir>/batches/<key>.json`` and each file's state
names the batch and its place in it; the accepted parts are remembered per file. A re-run
sends the same batch again with the same key: the server replays the same objects (with
fresh URLs once the old ones expired), and only the missing parts are sent. A file whose
batch record is gone, or whose object was deleted or abandoned meanwhile, starts afresh.
A batch record is removed once no file's state names it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from engine.client.errors import ApiError, Forbidden, IptoError
from engine.client.transfer import (
    ResumeState,
    ResumeStore,
    UploadEvents,
    UploadResult,
    _error_dict,
    _NoEvents,
    _plan,
    file_stream,
    find_existing,
    refused,
    sha256_file,
    upload_file,
)

if TYPE_CHECKING:
    from engine.client.aio import AsyncClient

BATCH_SIZE = 500
_STATUS = {"invalid_request": 400, "forbidden": 403, "not_found": 404, "conflict": 409, "payload_too_large": 413,
           "unprocessable": 422, "size_mismatch": 422, "checksum_mismatch": 422, "rate_limited": 429, "unavailable": 503}


def _item_error(error: dict[str, Any]) -> dict[str, Any]:
    """A batch item's error object as an :class:`UploadResult` error (with its HTTP status)."""
    return {"code": error["code"], "message": error["message"], "status": _STATUS.get(error["code"]),
            "request_id": None, "details": error.get("details")}


@dataclass
class _File:
    path: Path
    content_type: str
    result: UploadResult
    st: os.stat_result | None = None
    state_file: Path | None = None
    state: ResumeState | None = None
    target: dict[str, Any] | None = None
    urls: dict[int, str] = field(default_factory=dict)

    @property
    def resume_state(self) -> ResumeState:
        """The resume state (set once the file is prepared)."""
        assert self.state is not None
        return self.state


class _Batches:
    """Batch records: the request body and key of each batch sent, for a re-run to replay."""

    def __init__(self, resume: ResumeStore | None) -> None:
        self.dir = None if resume is None else resume.directory / "batches"

    def save(self, key: str, dataset_id: str, files: list[dict[str, Any]]) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / f"{key}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"dataset_id": dataset_id, "files": files}, fh)
        os.replace(tmp, self.dir / f"{key}.json")

    def load(self, key: str) -> list[dict[str, Any]] | None:
        if self.dir is None:
            return None
        try:
            files = json.loads((self.dir / f"{key}.json").read_text())["files"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        return list(files)

    def prune(self) -> None:
        """Remove the records no file's state names any more."""
        if self.dir is None or not self.dir.exists():
            return
        named = set()
        for state_file in self.dir.parent.glob("*.json"):
            try:
                named.add(json.loads(state_file.read_text()).get("batch_key"))
            except (OSError, ValueError):
                continue
        for record in self.dir.glob("*.json"):
            if record.stem not in named:
                record.unlink(missing_ok=True)


class BulkUpload:
    """One run of :func:`upload_files`."""

    def __init__(self, client: AsyncClient, dataset_id: str, resume: ResumeStore | None, limiter: trio.CapacityLimiter,
                 events: UploadEvents, skip_existing: bool, batch_size: int) -> None:
        self.client, self.dataset_id, self.resume = client, dataset_id, resume
        self.limiter, self.ev, self.skip_existing, self.batch_size = limiter, events, skip_existing, batch_size
        self.batches = _Batches(resume)
        self.renewing: dict[str, trio.Lock] = {}

    # -- state ----------------------------------------------------------------------------
    def _save(self, f: _File) -> None:
        if f.state_file is not None and f.state is not None:
            ResumeStore.save(f.state_file, f.state)

    def _drop(self, f: _File) -> None:
        if f.state_file is not None:
            ResumeStore.drop(f.state_file)

    def _fail(self, f: _File, error: dict[str, Any], *, drop: bool) -> None:
        f.result.error, f.result.status = error, "failed"
        if drop:
            self._drop(f)

    # -- preparing ------------------------------------------------------------------------
    async def prepare(self, f: _File) -> str:
        """Where the file goes: ``single`` (a resume of a one-file upload), ``resumed``
        (a resume of a batch), ``new``, or ``done`` (skipped or failed already)."""
        try:
            f.st = f.path.stat()
            f.result.size_bytes = f.st.st_size
            if f.st.st_size == 0:
                raise IptoError("empty files cannot be uploaded (size_bytes must be at least 1)")
            if self.resume is not None:
                f.state_file, f.state = self.resume.load(self.client.url, self.dataset_id, f.path, f.st)
            if f.state is not None:
                if f.state.batch_index is None:
                    return "single"
                f.result.resumed = True
                return "resumed"
            self.ev.hashing(f.path, f.st.st_size)
            sha = await trio.to_thread.run_sync(sha256_file, f.path, abandon_on_cancel=True)
            if self.skip_existing and (existing := await find_existing(self.client, self.dataset_id, f.path.name, sha)):
                f.result.status, f.result.object_id, f.result.checksum_sha256 = "skipped", existing["object_id"], sha
                return "done"
            f.state = ResumeState(str(f.path), self.dataset_id, f.st.st_size, f.st.st_mtime_ns, sha, f.content_type, "")
            return "new"
        except (IptoError, OSError) as exc:
            self._fail(f, _error_dict(exc), drop=False)
            return "done"

    # -- initiating -------------------------------------------------------------------------
    @staticmethod
    def _body(f: _File) -> dict[str, Any]:
        assert f.state is not None
        return {"filename": f.path.name, "content_type": f.state.content_type, "size_bytes": f.state.size,
                "checksum_sha256": f.state.sha256}

    async def initiate_new(self, files: list[_File]) -> None:
        """One batch request for ``files`` (remembered first, so a re-run can replay it)."""
        key = str(uuid.uuid4())
        bodies = [self._body(f) for f in files]
        self.batches.save(key, self.dataset_id, bodies)
        for index, f in enumerate(files):
            assert f.state is not None
            f.state.idempotency_key, f.state.batch_key, f.state.batch_index = key, key, index
            self._save(f)
        await self._send(key, bodies, files, list(range(len(files))))

    async def _send(self, key: str, bodies: list[dict[str, Any]], files: list[_File], indexes: list[int]) -> None:
        try:
            results = await self.client.initiate_uploads(self.dataset_id, bodies, idempotency_key=key)
        except ApiError as exc:
            for f in files:
                self._fail(f, _error_dict(exc), drop=refused(exc))  # refused: nothing was created
            return
        except IptoError as exc:
            for f in files:
                self._fail(f, _error_dict(exc), drop=False)
            return
        for f, index in zip(files, indexes, strict=True):
            item = results[index]
            if not item["ok"]:
                self._fail(f, _item_error(item["error"]), drop=True)
                continue
            self._take(f, item["upload"])

    def _take(self, f: _File, target: dict[str, Any]) -> None:
        assert f.state is not None
        f.target = target
        f.urls = {n: url for n, url, _, _ in _plan(target, f.state.size)}  # type: ignore[arg-type]
        f.result.checksum_sha256, f.result.content_type = f.state.sha256, f.state.content_type
        f.result.object_id, f.result.upload_id = target["object_id"], target["upload_id"]
        f.result.strategy, f.result.parts_total = target["upload_strategy"], len(f.urls)
        if f.state.upload_id != target["upload_id"]:
            f.state.object_id, f.state.upload_id, f.state.parts = target["object_id"], target["upload_id"], {}
            self._save(f)

    async def initiate_resumed(self, files: list[_File]) -> list[_File]:
        """Replay each remembered batch (same key, same files); the files to start afresh."""
        by_key: dict[str, list[_File]] = {}
        for f in files:
            by_key.setdefault(f.resume_state.batch_key or "", []).append(f)
        afresh: list[_File] = []
        for key, group in by_key.items():
            bodies = self.batches.load(key)
            if bodies is None:
                afresh += group
                continue
            await self._send(key, bodies, group, [f.resume_state.batch_index or 0 for f in group])
            for f in group:
                if f.target is None:
                    continue
                obj = await self.client.get_object(f.target["object_id"])
                if obj["status"] == "pending_upload":
                    continue
                f.target = None
                if obj["status"] in ("failed", "deleted") or obj["review_state"] in ("expired", "rejected"):
                    f.result.resumed = False
                    afresh.append(f)  # abandoned or removed meanwhile
                else:
                    f.result.status = obj["status"]  # confirmed by the earlier run
                    self._drop(f)
        for f in afresh:
            self._drop(f)
            f.result.error = None
            assert f.state is not None
            f.state.object_id = f.state.upload_id = None
            f.state.parts = {}
        return afresh

    async def _renew(self, f: _File, stale: str) -> None:
        """A 403 on a part: the URLs expired. Replaying the file's batch renews them."""
        key = f.resume_state.batch_key or ""
        async with self.renewing.setdefault(key, trio.Lock()):
            if stale not in f.urls.values():
                return  # renewed meanwhile
            bodies = self.batches.load(key) or []
            results = await self.client.initiate_uploads(self.dataset_id, bodies, idempotency_key=key)
            item = results[f.resume_state.batch_index or 0]
            if item["ok"]:
                f.urls = {n: url for n, url, _, _ in _plan(item["upload"], f.resume_state.size)}

    # -- sending ------------------------------------------------------------------------------
    async def send(self, f: _File) -> None:
        """PUT the parts the server does not have yet; on failure the file's result says why."""
        assert f.state is not None and f.target is not None
        plan = _plan(f.target, f.state.size)  # type: ignore[arg-type]
        todo = [p for p in plan if str(p[0]) not in f.state.parts]
        self.ev.started(f.path, f.state.size, len(plan), len(plan) - len(todo))
        self.ev.advance(f.path, sum(length for n, _, _, length in plan if str(n) in f.state.parts))
        errors: list[BaseException] = []

        async def part(n: int, offset: int, length: int) -> None:
            for attempt in (1, 2):
                sent = 0

                def count(nbytes: int) -> None:
                    nonlocal sent
                    sent += nbytes
                    self.ev.advance(f.path, nbytes)

                url = f.urls[n]
                try:
                    etag = await self.client.put_presigned(url, lambda: file_stream(f.path, offset, length, count), length,
                                                           f.resume_state.content_type)
                except Forbidden:
                    self.ev.advance(f.path, -sent)
                    if attempt == 2:
                        raise
                    await self._renew(f, url)
                    continue
                except BaseException:
                    self.ev.advance(f.path, -sent)
                    raise
                f.resume_state.parts[str(n)] = etag.strip('"')
                self._save(f)
                f.result.parts_sent += 1
                return

        async def worker(pending: Any) -> None:
            for n, _, offset, length in pending:
                async with self.limiter:
                    try:
                        await part(n, offset, length)
                    except (IptoError, OSError) as exc:
                        errors.append(exc)

        pending = iter(todo)
        async with trio.open_nursery() as nursery:
            for _ in range(min(int(self.limiter.total_tokens), len(todo))):
                nursery.start_soon(worker, pending)
        if errors:
            self._fail(f, _error_dict(errors[0]), drop=False)  # the accepted parts are kept for a re-run

    # -- confirming -----------------------------------------------------------------------------
    async def confirm(self, files: list[_File]) -> None:
        """One batch confirmation for the files whose parts are all sent."""
        ready = [f for f in files if f.target is not None and f.result.error is None]
        if not ready:
            return
        try:
            results = await self.client.confirm_uploads([f.target["object_id"] for f in ready])  # type: ignore[index]
        except IptoError as exc:
            for f in ready:
                self._fail(f, _error_dict(exc), drop=False)
            return
        for f, item in zip(ready, results, strict=True):
            if item["ok"]:
                f.result.status = item["data"]["status"]
                f.result.checksum_sha256 = item["data"].get("checksum_sha256") or f.result.checksum_sha256
                f.result.error = None
                self._drop(f)
            else:
                error = _item_error(item["error"])
                self._fail(f, error, drop=error["status"] == 422)  # the bytes are wrong: a re-run starts afresh


async def upload_files(
    client: AsyncClient,
    dataset_id: str,
    files: Sequence[tuple[Path, str]],
    *,
    resume: ResumeStore | None = None,
    parallel: int = 4,
    events: UploadEvents | None = None,
    skip_existing: bool = False,
    batch_size: int = BATCH_SIZE,
) -> list[UploadResult]:
    """Upload ``(path, content_type)`` files into one dataset through the batch routes; one
    result per file, in order; never raises for a failed file. ``parallel`` bounds the PUTs
    in flight (and the files hashed at once)."""
    ev: UploadEvents = events or _NoEvents()
    limiter = trio.CapacityLimiter(parallel)
    run = BulkUpload(client, dataset_id, resume, limiter, ev, skip_existing, batch_size)
    items = [_File(path.resolve(), ctype, UploadResult(str(path.resolve()), 0, content_type=ctype)) for path, ctype in files]
    kinds: list[str] = [""] * len(items)

    async def prepare(i: int) -> None:
        async with limiter:
            kinds[i] = await run.prepare(items[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(items)):
            nursery.start_soon(prepare, i)

    async def single(f: _File) -> None:  # resumed one-file uploads keep their own path
        f.result = await upload_file(client, dataset_id, f.path, content_type=f.content_type, resume=resume,
                                     parallel=limiter, events=ev, skip_existing=skip_existing)

    resumed = [f for f, k in zip(items, kinds, strict=True) if k == "resumed"]
    fresh = [f for f, k in zip(items, kinds, strict=True) if k == "new"]
    afresh = await run.initiate_resumed(resumed)
    fresh += afresh
    kept = [f for f in resumed if f not in afresh]
    groups = [kept] if kept else []
    for start in range(0, len(fresh), batch_size):
        group = fresh[start : start + batch_size]
        await run.initiate_new(group)
        groups.append(group)

    async def one_group(group: list[_File]) -> None:
        async with trio.open_nursery() as nursery:
            for f in group:
                if f.target is not None and f.result.error is None:
                    nursery.start_soon(run.send, f)
        await run.confirm(group)

    async with trio.open_nursery() as nursery:
        for f in (f for f, k in zip(items, kinds, strict=True) if k == "single"):
            nursery.start_soon(single, f)
        for group in groups:
            nursery.start_soon(one_group, group)
    run.batches.prune()
    for f, kind in zip(items, kinds, strict=True):
        if kind != "single":  # upload_file told its own
            ev.finished(f.path, f.result)
    return [f.result for f in items]
