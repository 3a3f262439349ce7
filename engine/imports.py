"""V4 record imports (seed 004): upload-URL import jobs, one at a time per dataset, in
the order their files arrived.

``uninitialised`` (URL handed out) → ``queued`` (bytes arrived; its place in the dataset's
queue is fixed and stored) → ``processing`` (the dataset's only running import) →
``complete`` | ``partial`` | ``failed`` | ``pending_schema``.

Statuses: ``complete`` every record accepted; ``partial`` some accepted (visible at once),
some rejected (``errors``); ``failed`` nothing could be read as records (empty, not UTF-8,
not JSON lines, no CSV header), or every record broke the schema; ``pending_schema`` the
dataset had no schema when the import's turn came (setting one later does not re-run it:
upload again). Every state change is a message to the dataset's actor; the reading and
validating runs on worker threads, a batch at a time, each batch committed with its
checkpoint, so a restart resumes without losing or doubling records.

Arrivals. With local blobs the engine's PUT route sees a file arrive and queues it at
once. With S3 the bytes go straight to the bucket, so the engine looks: every
``ARRIVAL_POLL_SECONDS`` (and whenever someone reads an ``uninitialised`` import, and in
:meth:`Imports.wait_idle`) it lists the ``imports/`` keys — one request, however many
imports wait — and queues each file whose import is still ``uninitialised``, in the
order S3 says they arrived: LastModified (whole seconds), then when the URL was handed
out, then id. Files landing within the same second are therefore ordered by URL, not by
arrival. Queuing only moves an ``uninitialised`` import, so every engine process may
look. A presigned S3 URL cannot be made single-use: a file PUT again before its import
starts replaces the first; once processing starts the file is read from a local copy.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
import trio

from engine.actors.leases import Leases
from engine.actors.messages import Message
from engine.actors.supervisor import Supervisor
from engine.auth import Principal
from engine.config import ImportsConfig
from engine.datasets import Datasets
from engine.errors import EngineError, Forbidden, InvalidRequest, NotFound, PayloadTooLarge, ServiceUnavailable
from engine.ids import new_id
from engine.metrics import NO_METRICS, MetricsSink
from engine.objects import clean_filename
from engine.pagination import Page, page_of
from engine.records import FRAME_HEADER, Batch, check_schema
from engine.store.base import Store
from engine.store.blobs.base import BlobStore, ImportFile
from engine.store.blobs.local import local_store
from engine.store.records import Datapoint, Dataset, ImportJob

log = structlog.get_logger(__name__)

FORMATS = {".jsonl": ("jsonl", "application/x-ndjson"), ".csv": ("csv", "text/csv")}
CHUNK_BYTES = 1 << 20  # JSONL stripe size: ~2,000 records of 500 bytes
TERMINAL = ("complete", "partial", "failed", "pending_schema")
ARRIVAL_POLL_SECONDS = 2.0  # how often a store that takes uploads directly (S3) is listed for arrived files


# -- messages --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportArrived(Message):
    import_id: str
    size: int

    async def apply(self, ctx: Any) -> ImportJob | None:
        return await ctx.imports.apply_arrived(self.import_id, self.size)


@dataclass(frozen=True)
class ClaimNextImport(Message):
    dataset_id: str

    async def apply(self, ctx: Any) -> ImportJob | None:
        return await ctx.imports.apply_claim_next(self.dataset_id)


@dataclass(frozen=True)
class InsertBatch(Message):
    import_id: str
    batch: Batch

    async def apply(self, ctx: Any) -> ImportJob:
        b = self.batch
        return await ctx.store.insert_batch(
            self.import_id, b.lines, b.packed, b.errors, len(b.errors), b.parsed, b.offset, b.line, ctx.imports.now()
        )


@dataclass(frozen=True)
class FinishImport(Message):
    import_id: str
    status: str
    reason: str | None

    async def apply(self, ctx: Any) -> ImportJob:
        return await ctx.store.finish_import(self.import_id, self.status, self.reason, ctx.imports.now())


@dataclass(frozen=True)
class SetSchema(Message):
    principal: Principal
    dataset_id: str
    schema: dict[str, Any]

    async def apply(self, ctx: Any) -> Dataset:
        ds: Dataset = await ctx.datasets.get(self.principal, self.dataset_id)
        updated = await ctx.store.update_dataset(ds.tenant_id, ds.id, {"record_schema": self.schema, "updated_at": ctx.imports.now()})
        return updated


class Imports:
    metrics: MetricsSink = NO_METRICS  # set by Services when metrics are on

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        actors: Supervisor,
        datasets: Datasets,
        cfg: ImportsConfig,
        url_ttl_seconds: int,
        now: Callable[[], datetime],
        leases: Leases | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.actors = actors
        self.leases = leases or Leases(store)
        self.datasets = datasets
        self.cfg = cfg
        self.url_ttl = timedelta(seconds=url_ttl_seconds)
        self.now = now
        self._running: set[str] = set()  # datasets with a runner; changed only inside their actor
        self._idle = trio.Event()
        self._idle.set()
        self._arrivals_lock = trio.Lock()  # one look at a time, so files are queued in their order
        self._queued_files: set[str] = set()  # arrived files already looked at: not read again

    # -- API ---------------------------------------------------------------------------------
    async def create(self, principal: Principal, dataset_id: str, filename: str) -> tuple[ImportJob, str, str]:
        """A new ``uninitialised`` import and its presigned PUT URL and content type."""
        filename = clean_filename(filename)  # as uploads do: no directories, no NUL or other control characters
        ds = await self.datasets.get_accepting(principal, dataset_id, "imports")
        ext = os.path.splitext(filename)[1].lower()
        if ext not in FORMATS:
            raise InvalidRequest("the file must be .jsonl or .csv", {"fields": {"filename": "must end in .jsonl or .csv"}})
        fmt, content_type = FORMATS[ext]
        now = self.now()
        imp = ImportJob(new_id("imp"), ds.tenant_id, ds.id, filename, fmt, "uninitialised", now + self.url_ttl, now)
        await self.store.create_import(imp)
        url = await self.blobs.import_url(imp.id, imp.expires_at)
        log.info("import_created", import_id=imp.id, dataset_id=ds.id, format=fmt)
        return imp, url, content_type

    async def get(self, principal: Principal, import_id: str, dataset_id: str | None = None) -> ImportJob:
        imp = await self.store.get_import(principal.tenant_id, import_id)
        if imp is None or (dataset_id is not None and imp.dataset_id != dataset_id):
            raise NotFound("import not found")
        principal.require_dataset(imp.dataset_id)
        if imp.status == "uninitialised" and self.blobs.direct_uploads:
            # Its file may be in the bucket already: say so at once, not at the next look.
            if await self._look_for_arrivals():
                imp = await self.store.get_import(principal.tenant_id, import_id) or imp
        return imp

    async def list(self, principal: Principal, dataset_id: str, cursor: str | None, limit: int) -> Page[ImportJob]:
        ds = await self.datasets.get(principal, dataset_id)
        return await page_of(lambda after, n: self.store.list_imports(ds.tenant_id, ds.id, after, n), cursor, limit)

    async def datapoints(self, principal: Principal, dataset_id: str, cursor: str | None, limit: int) -> Page[Datapoint]:
        ds = await self.datasets.get(principal, dataset_id)
        return await page_of(lambda after, n: self.store.list_datapoints(ds.tenant_id, ds.id, after, n), cursor, limit)

    async def set_schema(self, principal: Principal, dataset_id: str, schema: Any) -> Dataset:
        checked = check_schema(schema)
        ds = await self.datasets.get(principal, dataset_id)
        updated: Dataset = await self.actors.ask(ds.id, SetSchema(principal, ds.id, checked))
        return updated

    # -- bytes arriving (the local blob route) -------------------------------------------------
    async def receive(self, import_id: str, content_length: int | None, body: AsyncIterable[bytes]) -> ImportJob:
        imp = await self.store.get_import_any(import_id)
        if imp is None or imp.status != "uninitialised":
            raise Forbidden("this upload URL is no longer usable: the file already arrived")
        limit = self.cfg.max_bytes
        if content_length is not None and content_length > limit:
            raise PayloadTooLarge(f"an import file holds at most {limit} bytes", {"max_bytes": limit})
        blobs = local_store(self.blobs)
        writer = await blobs.open_part_writer()
        try:
            await writer.take(body, limit, lambda: PayloadTooLarge(f"an import file holds at most {limit} bytes", {"max_bytes": limit}))
            await writer.commit(blobs.import_path(import_id))
        except BaseException:
            await writer.abort()
            raise
        arrived = await self.actors.ask(imp.dataset_id, ImportArrived(import_id, writer.size))
        if arrived is None:
            raise Forbidden("this upload URL is no longer usable: the file already arrived")
        return arrived

    # -- bytes arriving (S3: the engine looks) ------------------------------------------------------
    async def watch_arrivals(self) -> None:
        """Queue import files that arrive in the blob store directly, until cancelled.
        Returns at once where files arrive through the engine (local blobs)."""
        if not self.blobs.direct_uploads:
            return
        structlog.contextvars.clear_contextvars()
        while True:
            await self._look_for_arrivals()
            await trio.sleep(ARRIVAL_POLL_SECONDS)

    async def _look_for_arrivals(self) -> int:
        try:
            return await self.check_arrivals()
        except EngineError as exc:  # the blob store or the store is down: the next look will tell
            log.warning("import_arrivals_check_failed", error=exc.message)
            return 0

    async def check_arrivals(self) -> int:
        """One look at the arrived files: each whose import is ``uninitialised`` is queued,
        oldest first; files of finished imports (left by a crash) are removed. How many were queued."""
        async with self._arrivals_lock:
            listed = await self.blobs.arrived_imports()
            found: list[tuple[ImportFile, ImportJob]] = []
            for file in listed:
                if file.import_id in self._queued_files:
                    continue
                imp = await self.store.get_import_any(file.import_id)
                if imp is None or imp.status != "uninitialised":
                    if imp is not None and imp.status in TERMINAL:
                        await self.blobs.delete_import(imp.id)
                    self._queued_files.add(file.import_id)
                    continue
                found.append((file, imp))
            found.sort(key=lambda f: (f[0].arrived_at, f[1].created_at, f[1].id))
            blocked: set[str] = set()  # datasets whose actor is unavailable: their files wait, in order
            queued = 0
            for file, imp in found:
                if imp.dataset_id in blocked:
                    continue
                try:
                    await self.actors.ask(imp.dataset_id, ImportArrived(imp.id, file.size))
                except ServiceUnavailable as exc:
                    blocked.add(imp.dataset_id)
                    log.warning("import_arrival_not_queued", import_id=imp.id, error=exc.message)
                    continue
                self._queued_files.add(imp.id)
                queued += 1
            self._queued_files &= {f.import_id for f in listed}  # forget files that are gone
            return queued

    # -- in the dataset's actor -------------------------------------------------------------------
    async def apply_arrived(self, import_id: str, size: int) -> ImportJob | None:
        def next_status(current: str) -> str:
            return "ingesting" if current == "draft" else current

        arrived = await self.store.import_arrived(import_id, size, self.now(), next_status)
        if arrived is not None:
            log.info("import_queued", import_id=import_id, arrival=arrived.arrival, size_bytes=size)
            self.ensure_runner(arrived.dataset_id)
        return arrived

    async def apply_claim_next(self, dataset_id: str) -> ImportJob | None:
        claimed = await self.store.claim_next_import(dataset_id, self.now())
        if claimed is None:
            self._running.discard(dataset_id)  # in the actor: no arrival can slip in between
            if not self._running:
                self._idle.set()
        return claimed

    def ensure_runner(self, dataset_id: str) -> None:
        """Run the dataset's import queue in the background unless it runs in this process."""
        if dataset_id not in self._running:
            self._running.add(dataset_id)
            self._idle = trio.Event()
            self.actors.start_soon(self._run_dataset, dataset_id)

    async def resume_pending(self) -> int:
        """On start: every dataset with queued or processing imports gets its runner back."""
        pending = await self.store.datasets_with_pending_imports()
        for dataset_id in pending:
            self.ensure_runner(dataset_id)
        return len(pending)

    async def wait_idle(self) -> None:
        """Return once every file that arrived has been imported (tests and benchmarks)."""
        if self.blobs.direct_uploads:
            await self.check_arrivals()
        while self._running:
            await self._idle.wait()

    # -- the runner: one per dataset, one import at a time ---------------------------------------
    async def _run_dataset(self, dataset_id: str) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(dataset_id=dataset_id)
        drained = False
        try:
            # Several processes may share the store: one runs a dataset's imports at a time.
            async with self.leases.hold(f"imports:{dataset_id}", wait=False) as mine:
                if not mine:
                    # Its holder may stop before it sees our arrival: its release wakes us.
                    self.leases.watch_release(f"imports:{dataset_id}", lambda: self.ensure_runner(dataset_id))
                else:
                    while (imp := await self.actors.ask(dataset_id, ClaimNextImport(dataset_id))) is not None:
                        await self._process(imp)
                    drained = True  # the claim that found nothing ended this runner, in the actor
        except ServiceUnavailable as exc:
            log.warning("imports_interrupted", error=exc.message)
        finally:
            if not drained:  # refused the lease, lost it, or interrupted: the next scan or start resumes
                self._running.discard(dataset_id)
                if not self._running:
                    self._idle.set()

    async def _process(self, imp: ImportJob) -> None:
        structlog.contextvars.bind_contextvars(import_id=imp.id)
        ds = await self.store.get_dataset(imp.tenant_id, imp.dataset_id)
        if ds is None:
            await self._finish(imp, "failed", "the dataset was deleted")
            return
        if ds.record_schema is None:
            await self._finish(imp, "pending_schema", "the dataset has no schema: set one, then upload the file again")
            return
        if (imp.size_bytes or 0) > self.cfg.max_bytes:  # S3 takes any size: the limit is applied here
            await self._finish(imp, "failed", f"the file is larger than the {self.cfg.max_bytes} bytes an import may hold")
            return
        async with self.blobs.import_file(imp.id) as path:
            failure = None if path is None else await self._stream(imp, ds.record_schema, str(path))
        if path is None:
            await self._finish(imp, "failed", "the uploaded file is missing")
            return
        latest = await self.store.get_import(imp.tenant_id, imp.id)
        assert latest is not None
        status, reason = ("failed" if latest.accepted_count == 0 else "partial", failure) if failure else self.outcome(latest)
        await self._finish(imp, status, reason)

    async def _stream(self, imp: ImportJob, schema: dict[str, Any], path: str) -> str | None:
        """Parse and validate in child processes (``python -m engine.records``: no GIL shared
        with the server) while this process commits. A JSONL file is cut into ~1 MiB chunks
        on line boundaries that ``imports.reader_processes`` children take in turn; their
        batches are committed strictly in file order, taking the children in turn. Each
        pipe's small buffer bounds what is in flight. Returns why the file could not be
        read, if it could not."""
        size = (await trio.to_thread.run_sync(os.stat, path)).st_size
        workers = self.cfg.reader_processes if imp.format == "jsonl" and size - imp.checkpoint_offset > 4 * CHUNK_BYTES else 1
        base = {"format": imp.format, "path": path, "schema": schema, "offset": imp.checkpoint_offset,
                "line": imp.checkpoint_line, "batch_records": self.cfg.batch_records, "workers": workers,
                "chunk_bytes": CHUNK_BYTES}
        procs = [
            await trio.lowlevel.open_process(
                [sys.executable, "-m", "engine.records", orjson.dumps({**base, "worker": w}).decode()], stdout=subprocess.PIPE
            )
            for w in range(workers)
        ]
        channels = [trio.open_memory_channel[Any](1) for _ in procs]

        async def pump(proc: trio.Process, send: trio.MemorySendChannel[Any]) -> None:
            # Keep draining the pipe while batches are committed, so a child never waits on us.
            assert proc.stdout is not None
            buffer = bytearray()

            async def read_exactly(n: int) -> bytes | None:
                while len(buffer) < n:
                    chunk = await proc.stdout.receive_some(max(n - len(buffer), 1 << 20))  # type: ignore[union-attr]
                    if not chunk:
                        return None
                    buffer.extend(chunk)
                data = bytes(buffer[:n])
                del buffer[:n]
                return data

            async with send:
                while True:
                    header = await read_exactly(FRAME_HEADER.size)
                    payload = None if header is None else await read_exactly(FRAME_HEADER.unpack(header)[0])
                    if payload is None:
                        await send.send(("failed", "the record reader stopped unexpectedly"))
                        return
                    message = pickle.loads(payload)
                    await send.send(message)
                    if not isinstance(message, Batch):
                        return

        try:
            async with trio.open_nursery() as nursery:
                for proc, (send, _) in zip(procs, channels, strict=True):
                    nursery.start_soon(pump, proc, send)
                turn = 0
                while True:
                    message = await channels[turn % workers][1].receive()
                    turn += 1
                    if message is None:
                        nursery.cancel_scope.cancel()  # end of file: the others have nothing left
                        return None
                    if isinstance(message, tuple):
                        nursery.cancel_scope.cancel()
                        return str(message[1])
                    if message.lines or message.errors or workers == 1:
                        await self.actors.ask(imp.dataset_id, InsertBatch(imp.id, message))
            return None
        finally:
            with trio.CancelScope(shield=True):
                for proc in procs:
                    if proc.returncode is None:
                        proc.kill()
                    await proc.wait()
                    assert proc.stdout is not None
                    await proc.stdout.aclose()

    @staticmethod
    def outcome(imp: ImportJob) -> tuple[str, str | None]:
        if imp.parsed_count == 0:
            if imp.rejected_count == 0:
                return "failed", "the file holds no records: it is empty"
            first = imp.errors[0]["message"] if imp.errors else ""
            if "UTF-8" in first:
                return "failed", "the file is not UTF-8 text"
            return "failed", "the file is not JSON lines" if imp.format == "jsonl" else "no CSV record could be read"
        if imp.rejected_count == 0:
            return "complete", None
        if imp.accepted_count == 0:
            return "failed", "every record was rejected by the dataset's schema"
        return "partial", f"{imp.rejected_count} of {imp.rejected_count + imp.accepted_count} records were rejected"

    async def _finish(self, imp: ImportJob, status: str, reason: str | None) -> None:
        done = await self.actors.ask(imp.dataset_id, FinishImport(imp.id, status, reason))
        await self.blobs.delete_import(imp.id)
        log.info("import_finished", status=done.status, accepted=done.accepted_count, rejected=done.rejected_count, reason=reason)
        self.metrics.import_finished(done.accepted_count, done.rejected_count)

