"""The local blob store (embedded default): files in ``{data_dir}/blobs``.

Layout::

    objects/{blob_id}                      confirmed objects, immutable
    staging/{upload_id}/{part}.{random}    parts as received, one file per PUT
    tmp/                                   files being written (same filesystem: rename is atomic)

Nothing is ever visible under a final name before it is complete: bytes go to ``tmp/``,
are fsynced, then renamed. Each PUT gets a fresh staging name, so a late or repeated PUT
can never change bytes that a confirmation already verified. All file work runs on worker
threads; hashing there is parallel too (hashlib releases the GIL for large updates).

Confirmation follows :class:`engine.store.blobs.base.BlobStore`, so nothing is promoted
unverified: :meth:`prepare` yields a :class:`Staged` (size and SHA-256 of the object as
it would be), the caller checks them, then :meth:`promote` or :meth:`discard` it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import queue
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import outcome
import structlog
import trio

from engine.errors import NotFound, Unprocessable
from engine.offload import Offload, to_thread
from engine.signing import Signer
from engine.store.blobs.base import (
    COPY_CHUNK,
    BlobStore,
    ImportFile,
    ReceivedPart,
    Staged,
    import_key,
    object_key,
    upload_key,
)
from engine.store.records import ObjectRecord, Upload, UploadPart

log = structlog.get_logger(__name__)


def local_store(blobs: BlobStore) -> LocalBlobStore:
    """The local store, the only one whose bytes arrive through the engine's ``/blobs/`` routes."""
    if not isinstance(blobs, LocalBlobStore):
        raise NotFound("no such blob URL")
    return blobs


WRITEBACK_BYTES = 8 * 1024 * 1024
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing ``length`` bytes at ``offset`` to the disk now, without waiting
    (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, as RocksDB's ``bytes_per_sync``
    does): the fsync at the end then finds little left to write, instead of the whole
    file. It makes nothing durable by itself; elsewhere it does nothing."""
    if _libc is not None:
        _libc.sync_file_range(fd, ctypes.c_int64(offset), ctypes.c_int64(length), _SYNC_FILE_RANGE_WRITE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _StreamThreads:
    """A few long-lived threads that hash and write the bytes of every upload in the process.

    Not Trio's thread cache: that runs each job on a thread of its own, so eight uploads
    mean eight threads each taking the GIL back after every hash and every write, and the
    event loop, which needs the GIL to read the sockets the bytes come from, queues behind
    them. Measured on 2 cores, 8 concurrent 16 MiB uploads into a bare Hypercorn app
    hashing and writing like :class:`PartWriter`: ~620 MiB/s with a thread per job,
    ~830 MiB/s with one thread for all (bench/README.md has the engine's figures). A job
    is short (hash and buffered write of one batch), and jobs run in arrival order, so
    uploads take turns; fsyncs, which can block for long, stay on Trio's threads. The
    threads start on first use and, being at most ``size``, live as long as the process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[outcome.Outcome[Any]], None]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any], deliver: Callable[[outcome.Outcome[Any]], None]) -> None:
        self._jobs.put((fn, deliver))
        with self._lock:
            if len(self._threads) < self.size:
                thread = threading.Thread(target=self._run, name=f"ipto-stream-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _run(self) -> None:
        while True:
            fn, deliver = self._jobs.get()
            result = outcome.capture(fn)
            del fn
            try:
                deliver(result)
            except trio.RunFinishedError:
                pass  # the asker's Trio run is over: nobody waits for this result
            except BaseException:  # never lose the thread: the other uploads need it
                log.exception("stream_thread_deliver_failed")
            del deliver, result


# One per core, up to 4. Since the threads read upload bodies from the sockets themselves
# (engine.http.direct_body), the event loop has little to do per byte, and a thread that
# waits for the GIL leaves its core to the others: on 2 cores, 8 concurrent 16 MiB uploads
# ran at ~500 MiB/s with one thread and ~700 with two (bench/README.md).
STREAM_THREADS = _StreamThreads(max(1, min(4, os.cpu_count() or 2)))


class _ThreadJob:
    """``fn(*args)`` on one of the :data:`STREAM_THREADS`, which the caller does not wait
    for until it wants the result (``await job.done.wait()``, then ``job.outcome``)."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.outcome: outcome.Outcome[Any] | None = None

    @classmethod
    def start(cls, fn: Callable[..., Any], *args: Any) -> _ThreadJob:
        job = cls()
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[Any]) -> None:  # on the stream thread
            job.outcome = result
            token.run_sync_soon(job.done.set)

        STREAM_THREADS.submit(functools.partial(fn, *args), deliver)
        return job


class PartWriter:
    """Streams one PUT body to a temporary file while hashing it, on a worker thread.

    :meth:`write` hands its chunk to the thread and returns once the chunk before has been
    hashed and written: the next chunk comes off the network while this one is hashed and
    written, the two on two cores instead of one after the other. At most one chunk is in
    the thread, so memory stays at two chunks per upload. :meth:`receive_from` instead
    has the thread read the bytes from the socket itself (:mod:`engine.http.direct_body`)."""

    def __init__(self, tmp: Path, offload: Offload = to_thread) -> None:
        self.tmp = tmp
        self._offload = offload
        self._fh: BinaryIO | None = None  # opened by the first write, on the thread; closed by commit/abort
        self._hash = hashlib.sha256()
        self.size = 0  # bytes given to the writer (handed to the thread or read by it)
        self._written = 0  # bytes hashed and written, counted on the thread
        self._flushed = 0  # bytes handed to the disk's writeback so far
        self._inflight: _ThreadJob | None = None
        self._failure: BaseException | None = None  # of a read from the socket, raised by the next call
        self._finished = False  # committed or aborted
        self._held: list[bytes] | None = None  # a small body, kept until commit writes it in the same thread job

    def _file(self) -> BinaryIO:
        if self._fh is None:
            self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit/abort
        return self._fh

    def _write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        fh = self._file()
        fh.write(data)
        self._written += len(data)
        if self._written - self._flushed >= WRITEBACK_BYTES:
            fh.flush()
            start_writeback(fh.fileno(), self._flushed, self._written - self._flushed)
            self._flushed = self._written

    async def write(self, data: bytes) -> None:
        await self._finish_inflight()
        if self._offload is to_thread:
            self.size += len(data)
            self._inflight = _ThreadJob.start(self._write, data)
        else:  # an offload of the caller's (tests): one chunk at a time, through it, counted once written
            await self._offload(self._write, data)
            self.size += len(data)

    def _receive(self, sock: socket.socket, limit: int) -> tuple[int, bool]:
        """On a stream thread: up to ``limit`` bytes from ``sock`` into this thread's
        buffer, each read hashed and written at once, while still in this core's cache.
        Returns how many, and whether the socket may have more (False: the peer closed,
        the socket failed, or writing failed, which is kept in ``_failure``)."""
        view = _receive_buffer()
        done = 0
        while done < limit:
            try:
                n = sock.recv_into(view, min(len(view), limit - done))
            except BlockingIOError:
                return done, True
            except OSError:
                return done, False  # reset or closed: the connection's own reader sees it too
            if n == 0:
                return done, False
            done += n
            try:
                self._write(view[:n])
            except BaseException as exc:
                self._failure = exc
                return done, False
        return done, True

    async def receive_from(self, sock: socket.socket, count: int) -> int:
        """Read up to ``count`` body bytes from the non-blocking ``sock`` on the stream
        threads, hashing and writing them as they come; returns how many were read (fewer
        only if the peer closed, the socket failed, writing failed, or the writer was
        committed or aborted meanwhile). A failure to write, here or in the write before,
        is not raised here (the caller is the connection's reader, not the app) but by the
        writer's next call, which the app makes when the body's last byte reaches it.
        A job reads at most RECEIVE_JOB_BYTES, so concurrent uploads take turns."""
        if self._inflight is not None:
            job, self._inflight = self._inflight, None
            with trio.CancelScope(shield=True):
                await job.done.wait()
            assert job.outcome is not None
            if isinstance(job.outcome, outcome.Error):
                self._failure = job.outcome.error
        if self._failure is not None:
            return 0
        got = 0
        while got < count and not self._finished:
            asked = min(count - got, RECEIVE_JOB_BYTES)
            job = self._inflight = _ThreadJob.start(self._receive, sock, asked)
            with trio.CancelScope(shield=True):  # the thread is using the socket and the file
                await job.done.wait()
            if self._inflight is job:
                self._inflight = None
            assert job.outcome is not None
            n, more = job.outcome.unwrap()
            got += n
            self.size += n
            if not more:
                break
            if n < asked:
                await trio.lowlevel.wait_readable(sock)
        return got

    async def _finish_inflight(self) -> None:
        if self._inflight is None:
            await trio.lowlevel.checkpoint()
        else:
            await self._inflight.done.wait()
            job, self._inflight = self._inflight, None
            assert job.outcome is not None
            job.outcome.unwrap()
        if self._failure is not None:
            raise self._failure

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _commit(self, final: Path) -> None:
        if self._held is not None:  # a small body: hashed and written here, with its fsync
            for chunk in self._held:
                self._write(chunk)
            self._held = None
        fh = self._file()  # an empty body was never written
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, final)
        _fsync_dir(final.parent)

    async def commit(self, final: Path) -> None:
        await self._finish_inflight()
        self._finished = True
        await self._offload(self._commit, final)

    def _abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

    async def abort(self) -> None:
        self._finished = True
        with trio.CancelScope(shield=True):
            if self._inflight is not None:
                await self._inflight.done.wait()  # the thread is done with the file; its outcome no longer matters
                self._inflight = None
            await self._offload(self._abort)

    async def take(self, body: AsyncIterable[bytes], limit: int, too_large: Callable[[], Exception]) -> None:
        """Write all of ``body`` (at most ``limit`` bytes, else ``too_large()`` is raised);
        a body that can deliver straight from the socket (:class:`DirectBody`) does so.

        A body declared at most SMALL_BODY_BYTES long is only kept here, and :meth:`commit`
        hashes, writes and fsyncs it in one thread job: for a small file the trip to a
        stream thread and back cost as much as the hashing and writing it carried (no more
        is held than Hypercorn's own queue holds for a larger body at a time)."""
        if limit <= SMALL_BODY_BYTES:
            held: list[bytes] = []
            async for chunk in body:
                if self.size + len(chunk) > limit:
                    raise too_large()
                held.append(chunk)
                self.size += len(chunk)
            self._held = held
            return
        with body.direct_to(self) if isinstance(body, DirectBody) else contextlib.nullcontext():
            async for chunk in body:
                if self.size + len(chunk) > limit:
                    raise too_large()
                await self.write(chunk)


@runtime_checkable
class DirectBody(Protocol):
    """A request body whose transport can read the rest of it into a :class:`PartWriter`
    (:meth:`PartWriter.receive_from`) while the writer is offered."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def direct_to(self, writer: PartWriter) -> contextlib.AbstractContextManager[None]: ...


# Bodies declared at most this long are kept in memory until commit (PartWriter.take).
SMALL_BODY_BYTES = 256 * 1024
# What a stream thread reads from a socket at once, into a buffer of its own that stays in
# its core's cache; and at most how much one job reads before the next upload's turn.
RECEIVE_READ_BYTES = 1024 * 1024
RECEIVE_JOB_BYTES = 4 * 1024 * 1024
_thread_state = threading.local()


def _receive_buffer() -> memoryview:
    view: memoryview | None = getattr(_thread_state, "view", None)
    if view is None or len(view) != RECEIVE_READ_BYTES:  # (tests change the size)
        view = _thread_state.view = memoryview(bytearray(RECEIVE_READ_BYTES))
    return view


class LocalBlobStore:
    direct_uploads = False

    def __init__(self, root: Path, signer: Signer, offload: Offload = to_thread) -> None:
        self.root = root
        self.signer = signer
        self._offload = offload
        for sub in ("objects", "staging", "tmp", "artifacts", "imports"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # -- URLs -----------------------------------------------------------------------
    def put_url(self, upload: Upload, part_number: int, length: int) -> str:
        return self.signer.url("PUT", upload_key(upload.id), upload.expires_at, length, part_number)

    async def upload_urls(self, upload: Upload, blob_id: str, size: int, sha256: str | None) -> list[str]:
        return [self.put_url(upload, n, upload.part_length(n, size)) for n in range(1, upload.part_count + 1)]

    async def download_url(self, obj: ObjectRecord, expires_at: datetime) -> str:
        return self.signer.url("GET", object_key(obj.blob_id), expires_at, obj.size_bytes)

    async def import_url(self, import_id: str, expires_at: datetime) -> str:
        return self.signer.url("PUT", import_key(import_id), expires_at, 0)

    # -- paths ----------------------------------------------------------------------
    def object_path(self, blob_id: str) -> Path:
        return self.root / "objects" / blob_id

    def staging_path(self, upload_id: str, file_name: str) -> Path:
        return self.root / "staging" / upload_id / file_name

    async def ping(self) -> None:
        probe = self.root / "tmp" / f".health-{secrets.token_hex(4)}"
        await self._offload(probe.write_bytes, b"ok")
        await self._offload(probe.unlink)

    # -- receiving ------------------------------------------------------------------
    async def open_part_writer(self) -> PartWriter:
        return PartWriter(self.root / "tmp" / f"put-{secrets.token_hex(8)}", self._offload)

    @staticmethod
    def new_part_name(part_number: int) -> str:
        return f"{part_number}.{secrets.token_hex(6)}"

    # -- confirming -----------------------------------------------------------------
    async def received_parts(self, upload: Upload, blob_id: str, recorded: Sequence[UploadPart]) -> list[ReceivedPart]:
        """What the blob route received, as the engine's store recorded it (the ETag of a
        part is its SHA-256, already computed while it arrived)."""
        return [ReceivedPart(p.part_number, p.size_bytes, p.etag, p.file_name) for p in recorded]

    async def prepare(self, upload: Upload, blob_id: str, parts: Sequence[ReceivedPart]) -> Staged:
        """The object as it would be: one part as is, or several assembled (and hashed) in order."""
        if upload.strategy == "single_part":
            (part,) = parts
            sha256 = part.etag.strip('"')
            path = self.staging_path(upload.id, part.file_name)
            if path.exists():
                return Staged(part.size_bytes, sha256, str(path))
            final = self.object_path(blob_id)
            if final.exists() and final.stat().st_size == part.size_bytes:
                return Staged(part.size_bytes, sha256, None)  # promoted before a crash
            raise Unprocessable("the uploaded bytes are missing; upload the file again", {"part_number": 1})
        return await self._offload(self._assemble, upload, parts)

    def _assemble(self, upload: Upload, parts: Sequence[ReceivedPart]) -> Staged:
        tmp = self.root / "tmp" / f"assemble-{upload.id}-{secrets.token_hex(4)}"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(self.staging_path(upload.id, part.file_name), "rb") as src:
                        while chunk := src.read(COPY_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise Unprocessable("a part's bytes are missing; upload it again") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Staged(size, digest.hexdigest(), str(tmp))

    async def promote(self, staged: Staged, blob_id: str) -> None:
        source = staged.source
        if source is None:
            return

        def move() -> None:
            final = self.object_path(blob_id)
            os.replace(source, final)
            _fsync_dir(final.parent)
            folder = Path(source).parent
            if folder.parent == self.root / "staging":  # a single part: its upload's folder is empty now
                with contextlib.suppress(OSError):
                    folder.rmdir()

        await self._offload(move)

    async def discard(self, staged: Staged, upload: Upload) -> None:
        """Drop an assembled candidate that failed verification (received parts stay)."""
        source = staged.source
        if source is not None and upload.strategy == "multipart":
            await self._offload(lambda: Path(source).unlink(missing_ok=True))

    # -- removing -------------------------------------------------------------------
    async def discard_upload(self, upload_id: str, blob_id: str, multipart: bool = True) -> None:
        folder = self.root / "staging" / upload_id
        if folder.exists():  # not after a single part's promote, which removed it: no trip to a thread
            await self._offload(lambda: shutil.rmtree(folder, ignore_errors=True))

    async def discard_staged_file(self, upload_id: str, file_name: str) -> None:
        await self._offload(lambda: self.staging_path(upload_id, file_name).unlink(missing_ok=True))

    async def exists(self, blob_id: str) -> bool:
        return bool(await self._offload(self.object_path(blob_id).exists))

    async def delete(self, blob_id: str) -> None:
        await self._offload(lambda: self.object_path(blob_id).unlink(missing_ok=True))

    @contextlib.asynccontextmanager
    async def object_file(self, blob_id: str) -> AsyncIterator[Path]:
        yield self.object_path(blob_id)

    # -- record import files ------------------------------------------------------------
    def import_path(self, import_id: str) -> Path:
        return self.root / "imports" / import_id

    async def arrived_imports(self) -> list[ImportFile]:
        def scan() -> list[ImportFile]:
            found = []
            for entry in os.scandir(self.root / "imports"):
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    found.append(ImportFile(entry.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
            return sorted(found, key=lambda f: (f.arrived_at, f.import_id))

        return await self._offload(scan)

    @contextlib.asynccontextmanager
    async def import_file(self, import_id: str) -> AsyncIterator[Path | None]:
        path = self.import_path(import_id)
        yield path if await self._offload(path.exists) else None

    async def delete_import(self, import_id: str) -> None:
        await self._offload(lambda: self.import_path(import_id).unlink(missing_ok=True))

    # -- pipeline artifacts ---------------------------------------------------------------
    def artifact_path(self, object_id: str, name: str) -> Path:
        return self.root / "artifacts" / object_id / name

    async def write_artifact(self, object_id: str, name: str, data: bytes) -> None:
        """Store an artifact atomically (tmp, fsync, rename): a re-run overwrites it whole."""

        def write() -> None:
            final = self.artifact_path(object_id, name)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.root / "tmp" / f"artifact-{secrets.token_hex(6)}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)

        await self._offload(write)

    async def read_artifact(self, object_id: str, name: str) -> bytes:
        return await self._offload(self.artifact_path(object_id, name).read_bytes)

    async def delete_artifacts(self, object_id: str) -> None:
        await self._offload(lambda: shutil.rmtree(self.root / "artifacts" / object_id, ignore_errors=True))

    async def sweep_tmp(self, older_than_seconds: float) -> int:
        """Remove temporary files left by a crash (a live PUT touches its file constantly)."""

        def sweep() -> int:
            cutoff = time.time() - older_than_seconds
            removed = 0
            for entry in os.scandir(self.root / "tmp"):
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass
            return removed

        return await self._offload(sweep)
