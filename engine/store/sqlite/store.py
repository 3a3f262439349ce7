"""SQLite implementation of :class:`engine.store.base.Store` (the embedded default).

SQLite calls block, so almost none runs on the Trio thread: an operation is a plain
function run by ``trio.to_thread.run_sync`` on one of

* one writer connection, taken under a ``trio.Lock`` (SQLite allows one writer anyway;
  queuing on the lock costs nothing in a thread and keeps ``BEGIN IMMEDIATE`` from
  spinning on ``SQLITE_BUSY``), and
* a small pool of reader connections; WAL mode lets them read a consistent snapshot
  while the writer commits.

The exceptions are *quick* reads and writes (``quick=True``): a lookup by key, or a write
of a few rows, which every request makes (its session, its dataset, its object). On the
Trio thread such a statement takes microseconds, while a hop to a worker thread and back
costs ~220 µs of CPU on these 2-core machines (measured), more than the request's own work.

* A quick read runs inline on its own reader connection. WAL readers do not wait for the
  writer; that connection has no busy timeout, and in the rare case it would wait (another
  process recovering the WAL) the read is retried on a worker thread.
* A quick write runs inline on the writer connection (under the same lock) with
  ``synchronous=NORMAL``, so COMMIT appends to the WAL without an fsync, then waits for
  the disk: group commit. The first waiter fdatasyncs the WAL, and that one sync covers
  every commit made before it began; writers arriving meanwhile wait for the next. On a
  fast disk (a moving average under ``INLINE_FSYNC_SECONDS``) the sync runs on the Trio
  thread, which costs less than the hop; a slower one gets a worker thread, so the loop
  never stalls for long. A quick write never checkpoints on the loop
  (``wal_autocheckpoint=0`` while it runs): every ``CHECKPOINT_COMMITS`` quick commits a
  sync on a worker thread also runs a PASSIVE checkpoint on a connection of its own. If
  another process holds the write lock, the write waits for it on a worker thread.
* A dataset's actor applies messages whose writes nothing outside the store acts on
  (``Message.flush_by_asker``) inside :func:`~engine.store.base.flush_deferred`: their
  quick writes return at COMMIT, the actor moves on, and the asker waits in
  :meth:`flush`, so one sync can acknowledge many datasets' and many messages' writes.
* Quick work goes to worker threads instead while CPU-bound Python threads run
  (:func:`engine.offload.cpu_bound`: inline, the loop would queue for the GIL at every
  statement) and, for a while, after an inline operation kept the loop waiting (off the
  CPU) for more than ``INLINE_SLOW_SECONDS`` (the kernel throttling writes while dirty
  pages pile up, a cold page cache).
* Several processes of one engine (``--workers``) take a file lock (``flock`` on
  ``write.lock`` beside the database) around each write transaction, on top of the
  ``trio.Lock``: SQLite's own busy handler sleeps and polls (1, 2, 5, 10 ... ms), which
  would stall every commit that meets another process's, while the file lock hands over
  as soon as it is released. A write that finds it held retries between scheduler turns
  for up to ``PROCESS_LOCK_SPIN_SECONDS``, then waits for it on a worker thread.
* Between its COMMIT and the fsync a quick write is visible to other readers before it is
  durable (as in any group commit); an acknowledged write is always on disk.

Threads are never abandoned on cancellation (``abandon_on_cancel=False``): a cancelled
caller waits for its transaction to commit or roll back, so no connection is left
mid-transaction. Driver errors are translated at this boundary (``_translate``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
import trio

from engine.errors import StoreError, UniqueViolation
from engine.offload import Offload, cpu_bound_running, to_thread
from engine.store import webhook_events as ev
from engine.store.base import is_flush_deferred
from engine.store.records import (
    DATASET_COLUMNS,
    DATASET_MUTABLE,
    IN_CATALOG,
    ApiKey,
    CatalogEntry,
    Dataset,
    IdempotencyRecord,
    Membership,
    Session,
    Tenant,
    User,
)
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.bulk import BulkMixin
from engine.store.sqlite.gauges import GaugesMixin
from engine.store.sqlite.imports import ImportsMixin
from engine.store.sqlite.market import MarketMixin
from engine.store.sqlite.money import MoneyMixin
from engine.store.sqlite.objects import ObjectsMixin
from engine.store.sqlite.pipeline import PipelineMixin
from engine.store.sqlite.review_queue import ReviewQueueMixin
from engine.store.sqlite.search import SearchMixin, upgrade_legacy_index
from engine.store.sqlite.sqltime import dt, ts
from engine.store.sqlite.webhooks import WebhooksMixin, emit

T = TypeVar("T")
log = structlog.get_logger(__name__)
CHECKPOINT_COMMITS = 256  # quick commits between WAL checkpoints (each a few pages)
# Page cache of each worker-thread reader (SQLite's default is 2 MiB). Searches read the
# FTS5 index's hot pages (its structure, the leaves of common terms' doclists) and the
# result chunks' b-tree pages on every query; at 2 MiB those are evicted by the doclists
# themselves and re-read from the OS (a pread and a copy per page): on a 200,000-chunk
# index a lexical query takes ~20 % less time and reading its result chunks ~70 % less with
# 8 MiB (bench/README.md, "Search"); 16, 32 or 64 MiB gain nothing more. At most 8 MiB
# more resident per reader (``store.readers``, 4 by default): the vector cache's first
# load fills a reader's cache with vector pages, so it is kept small.
READER_CACHE_KIB = 8192
# An fsync expected to take less than this runs on the Trio thread: waiting for it costs
# less than the hop to a worker thread and back (~0.2-0.35 ms of CPU on these machines; an
# fdatasync of a few WAL pages ~0.15 ms, 0.06 ms of it CPU). A slower disk gets a thread,
# so the loop never stalls for long; a checkpoint always gets one.
INLINE_FSYNC_SECONDS = 0.001
# An inline operation that kept the loop waiting longer than this sends quick work to worker
# threads for a while (1 s, doubling while it keeps happening, at most 30 s): under heavy
# writes the kernel can hold any write() for tens of milliseconds. Only time the thread
# spent blocked counts: off the CPU (wall minus thread CPU time) *and* having given the CPU
# up itself (a voluntary context switch). A garbage collection inside the operation (5-70
# ms, a few times a second under load) would cost as much on any thread; so would being
# preempted, or waiting up to the 5 ms switch interval for the GIL that stream threads
# hold (2 cores, uploads in flight), which tripped a 5 ms rule every second or two under
# small-file uploads; while a second of thread hops costs ~15 % of initiate's throughput
# (bench control, c=128) and sent every write of a dataset's actor through a thread.
INLINE_SLOW_SECONDS = 0.015
INLINE_BACKOFF_SECONDS = 1.0
PROCESS_LOCK_SPIN_SECONDS = 0.002  # a write transaction holds the file lock ~0.1 ms
INLINE_BACKOFF_MAX_SECONDS = 30.0


def _clocks() -> tuple[float, float, int]:
    """Wall time, this thread's CPU time and its voluntary context switches so far, to tell
    blocking (the kernel holding a write) from working, being preempted or a collection."""
    return time.monotonic(), time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


# The writer between writes: set for quick writes (no fsync in COMMIT, no checkpoint, no
# waiting for other processes); a write on a worker thread sets _THREAD_WRITER meanwhile.
_QUICK_WRITER = "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA busy_timeout=0;"
_THREAD_WRITER = "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=1000; PRAGMA busy_timeout=30000;"


class _Busy(Exception):
    """A quick write found the database locked by another process."""


def _busy(exc: StoreError) -> bool:
    """Whether SQLite refused because another connection holds a lock (no busy timeout)."""
    cause = exc.__cause__
    return isinstance(cause, sqlite3.OperationalError) and cause.sqlite_errorcode == sqlite3.SQLITE_BUSY



@contextlib.contextmanager
def _translate() -> Iterator[None]:
    """Map sqlite3 errors onto the engine's store errors."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
            raise UniqueViolation(str(exc)) from exc
        raise StoreError(f"integrity error: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite error: {exc}") from exc


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged write survives power loss too, not only a crash of the process.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("engine.store.sqlite") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text("utf-8")))
    return sorted(found)


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the numbered migrations not yet applied, each atomically; return those applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for number, name, sql in _migrations():
        if number in done:
            continue
        stamp = ts(datetime.now(UTC))
        script = f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_migrations VALUES ({number}, '{name}', '{stamp}');\nCOMMIT;"
        try:
            conn.executescript(script)
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(number)
    return applied


# -- row mappers ----------------------------------------------------------------------

def _user(r: sqlite3.Row) -> User:
    return User(r["id"], r["email"], r["name"], r["password_hash"], bool(r["is_platform_admin"]), dt(r["created_at"]))  # type: ignore[arg-type]


def _tenant(r: sqlite3.Row) -> Tenant:
    return Tenant(r["id"], r["name"], dt(r["created_at"]))  # type: ignore[arg-type]


def _membership(r: sqlite3.Row) -> Membership:
    return Membership(r["tenant_id"], r["user_id"], r["role"], dt(r["created_at"]))  # type: ignore[arg-type]


def _session(r: sqlite3.Row) -> Session:
    return Session(r["token_hash"], r["user_id"], r["tenant_id"], dt(r["created_at"]), dt(r["expires_at"]), dt(r["revoked_at"]))  # type: ignore[arg-type]


def _api_key(r: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=r["id"], tenant_id=r["tenant_id"], user_id=r["user_id"], name=r["name"], prefix=r["prefix"],
        secret_hash=r["secret_hash"], scopes=tuple(orjson.loads(r["scopes"])),
        dataset_access_mode=r["dataset_access_mode"], dataset_ids=tuple(orjson.loads(r["dataset_ids"])),
        created_at=dt(r["created_at"]), last_used_at=dt(r["last_used_at"]),  # type: ignore[arg-type]
        revoked_at=dt(r["revoked_at"]), seq=r["seq"],
    )




def _dataset(r: sqlite3.Row) -> Dataset:
    schema = r["record_schema"]
    return Dataset(
        id=r["id"], tenant_id=r["tenant_id"], name=r["name"], description=r["description"],
        source_modality=r["source_modality"], monetization_mode=r["monetization_mode"],
        pricing_model=r["pricing_model"], visibility=r["visibility"], status=r["status"],
        created_at=dt(r["created_at"]), updated_at=dt(r["updated_at"]),  # type: ignore[arg-type]
        object_count=r["object_count"], active_object_count=r["active_object_count"],
        total_bytes=r["total_bytes"], total_datapoint_count=r["total_datapoint_count"],
        last_ingest_at=dt(r["last_ingest_at"]),
        record_schema=None if schema is None else orjson.loads(schema), seq=r["seq"],
        price_micros=r["price_micros"], currency=r["currency"],
    )


def _dataset_value(column: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return ts(value)
    if column == "record_schema" and value is not None:
        return orjson.dumps(value).decode()
    return value


def _idem(r: sqlite3.Row) -> IdempotencyRecord:
    return IdempotencyRecord(
        r["principal"], r["key"], r["fingerprint"], r["state"], r["status_code"], r["response"],
        dt(r["created_at"]), dt(r["locked_at"]), dt(r["expires_at"]),  # type: ignore[arg-type]
    )


def _page_clause(after: int | None) -> tuple[str, list[Any]]:
    return ("AND seq < ?", [after]) if after is not None else ("", [])


class SqliteStore(ObjectsMixin, ReviewQueueMixin, PipelineMixin, SearchMixin, MarketMixin, MoneyMixin, ImportsMixin, BulkMixin, WebhooksMixin, GaugesMixin, SqliteAccess):
    """The embedded store. Open it with :meth:`open`."""

    def __init__(
        self, writer: sqlite3.Connection, readers: list[sqlite3.Connection], offload: Offload = to_thread,
        process_lock: Path | None = None,
    ) -> None:
        self._offload = offload
        # Several processes on this file: the lock they take around each write transaction.
        self._process_lock = None if process_lock is None else os.open(process_lock, os.O_RDWR | os.O_CREAT, 0o600)
        self._writer = writer
        self._write_lock = trio.Lock()
        self._writer.executescript(_QUICK_WRITER)
        self._quick = readers[0]  # quick reads, on the Trio thread
        self._quick.execute("PRAGMA busy_timeout=0")
        self._checkpointer = readers[1]  # WAL checkpoints after quick writes, on a worker thread
        self._readers = readers[2:]
        for conn in self._readers:
            conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        self._reader_slots = trio.Semaphore(len(self._readers))
        # Group commit: quick writes commit without an fsync; whoever waits first fsyncs the
        # WAL for everyone committed by then (see the module's doc).
        self._wal_path = Path(self._writer.execute("PRAGMA database_list").fetchone()[2] + "-wal")
        self._committed = 0  # quick commits made
        self._synced = 0  # quick commits known to be on disk
        self._syncing: trio.Event | None = None  # set when the fsync under way ends
        self._since_checkpoint = 0  # quick commits since the last checkpoint
        self._fsync_seconds = INLINE_FSYNC_SECONDS * 2  # how long an fsync takes (moving average); a thread until measured
        self._inline_after = 0.0  # monotonic time before which quick work goes to threads
        self._inline_backoff = 0.0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, path: Path, readers: int = 4, offload: Offload = to_thread, processes: int = 1
    ) -> AsyncIterator[SqliteStore]:
        """Open (creating and migrating as needed) the database at ``path``; ``processes``:
        how many engine processes write to it (more than one: they take a file lock)."""
        path.parent.mkdir(parents=True, exist_ok=True)

        def setup() -> tuple[sqlite3.Connection, list[sqlite3.Connection]]:
            writer = _connect(str(path))
            migrate(writer)
            upgrade_legacy_index(writer)
            return writer, [_connect(str(path)) for _ in range(readers + 2)]  # + quick reads, checkpoints

        with _translate():
            writer, pool = await offload(setup)
        store = cls(writer, pool, offload, path.parent / "write.lock" if processes > 1 else None)
        try:
            yield store
        finally:
            with trio.CancelScope(shield=True):
                async with store._write_lock:
                    await offload(store._close_all)

    def _close_all(self) -> None:
        for conn in [self._quick, self._checkpointer, *self._readers]:
            conn.close()
        if self._process_lock is not None:
            os.close(self._process_lock)
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute("PRAGMA optimize")
        self._writer.close()

    # -- plumbing -----------------------------------------------------------------
    @staticmethod
    def _in_tx(conn: sqlite3.Connection, begin: str | None, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """``fn(conn, *args)`` between ``begin`` and COMMIT (None: one statement, in autocommit)."""
        with _translate():
            if begin is None:
                return fn(conn, *args)
            conn.execute(begin)
            try:
                result = fn(conn, *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    async def write(self, fn: Callable[..., T], *args: Any, durable: bool = True, quick: bool = False) -> T:
        """Run ``fn(conn, *args)`` in one write transaction on a worker thread, or,
        ``quick``, on this thread; either way the COMMIT appends to the WAL without an fsync
        and the caller then waits for a group-committed one (see the module's doc)."""
        try:
            self._write_lock.acquire_nowait()  # free (nearly always): no trip through the scheduler
        except trio.WouldBlock:
            await self._write_lock.acquire()
        try:
            if self._process_lock is not None:
                await self._lock_processes(self._process_lock)
            done = False
            if quick and self._inline_ok():
                started = _clocks()
                try:
                    result = self._in_quick_write(fn, args)
                except _Busy:
                    pass  # another process holds the database: wait for it on a worker thread
                else:
                    self._timed_inline(started)
                    done = True
            if not done:
                result = await self._offload(self._in_thread_write, self._writer, fn, args)
            self._committed += 1
            self._since_checkpoint += 1
            ticket = self._committed
        finally:
            if self._process_lock is not None:
                fcntl.flock(self._process_lock, fcntl.LOCK_UN)
            self._write_lock.release()
        if durable and not is_flush_deferred():
            await self._sync(ticket)
        return result

    async def flush(self) -> None:
        await self._sync(self._committed)

    async def _lock_processes(self, fd: int) -> None:
        """Take the file lock the engine's processes share around write transactions."""
        deadline = time.monotonic() + PROCESS_LOCK_SPIN_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
            await trio.sleep(0)  # another process is committing: let this one's other tasks run meanwhile
        await self._offload(fcntl.flock, fd, fcntl.LOCK_EX)

    # -- when quick work may run inline ----------------------------------------------
    def _inline_ok(self) -> bool:
        """Quick work runs on the Trio thread unless CPU-bound threads are running (it
        would queue for the GIL at every statement) or an inline operation recently
        kept it waiting (the kernel throttling writes while dirty pages pile up, a cold page cache)."""
        return not cpu_bound_running() and time.monotonic() >= self._inline_after

    def _timed_inline(self, started: tuple[float, float, int]) -> None:
        """After an inline operation (``started``: :func:`_clocks` before it): if it kept the
        loop blocked for long, send quick work to worker threads for a while, twice as long
        each time it happens again in a row."""
        wall, cpu, switches = _clocks()
        if (wall - started[0]) - (cpu - started[1]) > INLINE_SLOW_SECONDS and switches > started[2]:
            self._inline_backoff = min(max(self._inline_backoff * 2, INLINE_BACKOFF_SECONDS), INLINE_BACKOFF_MAX_SECONDS)
            self._inline_after = wall + self._inline_backoff
            log.info("sqlite_inline_backoff", seconds=self._inline_backoff)
        else:
            self._inline_backoff = 0.0

    def _in_quick_write(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        # The writer is set for quick writes (_QUICK_WRITER); writes on a worker thread set
        # it for themselves and back (_in_thread_write).
        try:
            return self._in_tx(self._writer, "BEGIN IMMEDIATE", fn, args)
        except StoreError as exc:
            if _busy(exc):
                raise _Busy from exc
            raise

    @classmethod
    def _in_thread_write(cls, conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        # The COMMIT is written to the WAL but not fsynced, as inline: the caller waits for
        # the group-committed fsync (``write``), so a write on a thread never holds the
        # writer (and a dataset's actor) through an fsync of its own. Checkpoints as SQLite
        # does by default; the busy timeout waits for other processes.
        conn.executescript(_THREAD_WRITER)
        try:
            return cls._in_tx(conn, "BEGIN IMMEDIATE", fn, args)
        finally:
            conn.executescript(_QUICK_WRITER)

    async def _sync(self, ticket: int) -> None:
        """Return once quick commit number ``ticket`` is on disk."""
        while self._synced < ticket:
            if self._syncing is not None:
                await self._syncing.wait()  # an fsync is under way; it may not cover ticket
                continue
            self._syncing = done = trio.Event()
            target = self._committed  # every commit up to here is in the WAL file already
            checkpoint = self._since_checkpoint >= CHECKPOINT_COMMITS
            if checkpoint:
                self._since_checkpoint = 0
            try:
                with _translate():
                    if checkpoint or self._fsync_seconds > INLINE_FSYNC_SECONDS or not self._inline_ok():
                        await self._offload(self._fsync_wal, checkpoint)
                    else:  # a fast disk: cheaper than the hop to a thread (a slow one moves the average)
                        self._fsync_wal(False)
                self._synced = max(self._synced, target)
            finally:
                self._syncing = None
                done.set()

    def _fsync_wal(self, checkpoint: bool) -> None:
        started = time.perf_counter()
        fd = os.open(self._wal_path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # as SQLite does: the data, and the size when it grew
        finally:
            os.close(fd)
        self._fsync_seconds += (time.perf_counter() - started - self._fsync_seconds) / 5  # moving average
        if checkpoint:  # PASSIVE: copies what it can, never waits for readers or the writer
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def read(self, fn: Callable[..., T], *args: Any, quick: bool = False, single: bool = False) -> T:
        """Run ``fn(conn, *args)`` in one read transaction (a snapshot) on a worker thread,
        or, ``quick``, on this thread (see the module's doc). ``single``: ``fn`` runs one
        statement, which reads one snapshot by itself (autocommit): a quick read then
        skips executing BEGIN and COMMIT, two thirds of a lookup's statements."""
        if quick and self._inline_ok():
            started = _clocks()
            try:
                result = self._in_tx(self._quick, None if single else "BEGIN", fn, args)
                self._timed_inline(started)
                return result
            except StoreError as exc:
                if not _busy(exc):
                    raise
                # locked by another process: wait for it on a worker thread, like any read
        async with self._reader_slots:
            conn = self._readers.pop()
            try:
                return await self._offload(self._in_tx, conn, "BEGIN", fn, args)
            finally:
                self._readers.append(conn)

    async def ping(self) -> None:
        await self.read(lambda c: c.execute("SELECT 1").fetchone())

    # -- identity -----------------------------------------------------------------
    async def create_account(self, tenant: Tenant, user: User, membership: Membership) -> None:
        def op(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", (tenant.id, tenant.name, ts(tenant.created_at)))
            c.execute(
                "INSERT INTO users (id, email, name, password_hash, is_platform_admin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (user.id, user.email, user.name, user.password_hash, int(user.is_platform_admin), ts(user.created_at)),
            )
            c.execute(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?)",
                (membership.tenant_id, membership.user_id, membership.role, ts(membership.created_at)),
            )

        await self.write(op, quick=True)

    async def get_user(self, user_id: str) -> User | None:
        return await self.one(_user, "SELECT * FROM users WHERE id = ?", (user_id,))

    async def get_user_by_email(self, email: str) -> User | None:
        return await self.one(_user, "SELECT * FROM users WHERE email = ?", (email,))

    async def set_platform_admin(self, user_id: str, is_admin: bool) -> None:
        await self.write(lambda c: c.execute("UPDATE users SET is_platform_admin = ? WHERE id = ?", (int(is_admin), user_id)), quick=True)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        return await self.one(_tenant, "SELECT * FROM tenants WHERE id = ?", (tenant_id,))

    async def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        return await self.one(_membership, "SELECT * FROM memberships WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))

    async def first_membership(self, user_id: str) -> Membership | None:
        return await self.one(_membership, "SELECT * FROM memberships WHERE user_id = ? ORDER BY created_at LIMIT 1", (user_id,))

    async def create_session(self, session: Session) -> None:
        await self.write(
            lambda c: c.execute(
                "INSERT INTO sessions (token_hash, user_id, tenant_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (session.token_hash, session.user_id, session.tenant_id, ts(session.created_at), ts(session.expires_at)),
            ), quick=True
        )

    async def get_session(self, token_hash: str) -> Session | None:
        return await self.one(_session, "SELECT * FROM sessions WHERE token_hash = ?", (token_hash,))

    async def session_principal(self, token_hash: str) -> tuple[Session, bool, str] | None:
        """A session with its user's admin flag and membership role, in one read (every request needs them)."""

        def op(c: sqlite3.Connection) -> tuple[Session, bool, str] | None:
            row = c.execute(
                "SELECT s.*, u.is_platform_admin, m.role FROM sessions s JOIN users u ON u.id = s.user_id"
                " JOIN memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id WHERE s.token_hash = ?",
                (token_hash,),
            ).fetchone()
            return None if row is None else (_session(row), bool(row["is_platform_admin"]), row["role"])

        return await self.read(op, quick=True, single=True)

    async def revoke_session(self, token_hash: str, at: datetime) -> None:
        await self.write(
            lambda c: c.execute("UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL", (ts(at), token_hash)), quick=True
        )

    async def purge_sessions(self, before: datetime) -> int:
        return await self.write(lambda c: c.execute("DELETE FROM sessions WHERE expires_at < ?", (ts(before),)).rowcount)

    # -- API keys -------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> None:
        await self.write(
            lambda c: c.execute(
                "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, secret_hash, scopes, dataset_access_mode,"
                " dataset_ids, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id, key.tenant_id, key.user_id, key.name, key.prefix, key.secret_hash,
                    orjson.dumps(list(key.scopes)).decode(), key.dataset_access_mode,
                    orjson.dumps(list(key.dataset_ids)).decode(), ts(key.created_at),
                ),
            ), quick=True
        )

    async def get_api_key_by_prefix(self, prefix: str) -> ApiKey | None:
        return await self.one(_api_key, "SELECT * FROM api_keys WHERE prefix = ?", (prefix,))

    async def get_api_key(self, tenant_id: str, key_id: str) -> ApiKey | None:
        return await self.one(_api_key, "SELECT * FROM api_keys WHERE id = ? AND tenant_id = ?", (key_id, tenant_id))

    async def list_api_keys(self, tenant_id: str, after: int | None, limit: int) -> list[ApiKey]:
        clause, params = _page_clause(after)
        rows = await self.read(
            lambda c: c.execute(
                f"SELECT * FROM api_keys WHERE tenant_id = ? {clause} ORDER BY seq DESC LIMIT ?", (tenant_id, *params, limit)
            ).fetchall()
        )
        return [_api_key(r) for r in rows]

    async def update_api_key(self, tenant_id: str, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        allowed = {"name", "dataset_access_mode", "dataset_ids", "revoked_at"}
        assert set(changes) <= allowed, changes
        sets, values = [], []
        for column, value in changes.items():
            if column == "dataset_ids":
                value = orjson.dumps(list(value)).decode()
            elif isinstance(value, datetime):
                value = ts(value)
            sets.append(f"{column} = ?")
            values.append(value)

        def op(c: sqlite3.Connection) -> sqlite3.Row | None:
            if sets:
                c.execute(f"UPDATE api_keys SET {', '.join(sets)} WHERE id = ? AND tenant_id = ?", (*values, key_id, tenant_id))
            return c.execute("SELECT * FROM api_keys WHERE id = ? AND tenant_id = ?", (key_id, tenant_id)).fetchone()

        row = await self.write(op, quick=True)
        return None if row is None else _api_key(row)

    async def touch_api_key(self, key_id: str, at: datetime, stale_before: datetime) -> None:
        await self.write(
            lambda c: c.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                (ts(at), key_id, ts(stale_before)),
            ), quick=True
        )

    # -- datasets -------------------------------------------------------------------
    async def create_dataset(self, dataset: Dataset) -> None:
        columns = DATASET_COLUMNS
        values = [_dataset_value(col, getattr(dataset, col)) for col in columns]
        await self.write(
            lambda c: c.execute(f"INSERT INTO datasets ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values), quick=True
        )

    async def get_dataset(self, tenant_id: str, dataset_id: str) -> Dataset | None:
        row = await self.read(
            lambda c: c.execute(
                "SELECT * FROM datasets WHERE id = ? AND tenant_id = ? AND status != 'deleted'", (dataset_id, tenant_id)
            ).fetchone(),
            quick=True, single=True,
        )
        return None if row is None else _dataset(row)

    async def get_dataset_any(self, dataset_id: str) -> Dataset | None:
        return await self.one(_dataset, "SELECT * FROM datasets WHERE id = ? AND status != 'deleted'", (dataset_id,))

    async def list_datasets(
        self,
        tenant_id: str,
        *,
        status: str | None,
        visibility: str | None,
        only_ids: Iterable[str] | None,
        after: int | None,
        limit: int,
    ) -> tuple[list[Dataset], int]:
        where = ["tenant_id = ?", "status != 'deleted'"]
        params: list[Any] = [tenant_id]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if visibility is not None:
            where.append("visibility = ?")
            params.append(visibility)
        if only_ids is not None:
            ids = list(only_ids)
            where.append(f"id IN ({', '.join('?' * len(ids))})" if ids else "0")
            params.extend(ids)
        clause, page_params = _page_clause(after)
        condition = " AND ".join(where)

        def op(c: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            rows = c.execute(
                f"SELECT * FROM datasets WHERE {condition} {clause} ORDER BY seq DESC LIMIT ?", (*params, *page_params, limit)
            ).fetchall()
            total = c.execute(f"SELECT count(*) FROM datasets WHERE {condition}", params).fetchone()[0]
            return rows, total

        rows, total = await self.read(op)
        return [_dataset(r) for r in rows], total

    async def existing_dataset_ids(self, tenant_id: str, ids: Iterable[str]) -> set[str]:
        wanted = list(ids)
        if not wanted:
            return set()
        rows = await self.read(
            lambda c: c.execute(
                f"SELECT id FROM datasets WHERE tenant_id = ? AND status != 'deleted' AND id IN ({', '.join('?' * len(wanted))})",
                (tenant_id, *wanted),
            ).fetchall()
        )
        return {r[0] for r in rows}

    async def update_dataset(self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]) -> Dataset | None:
        assert set(changes) <= DATASET_MUTABLE, changes
        sets = [f"{column} = ?" for column in changes]
        values = [_dataset_value(column, value) for column, value in changes.items()]

        def op(c: sqlite3.Connection) -> sqlite3.Row | None:
            changed = sets and c.execute(
                f"UPDATE datasets SET {', '.join(sets)} WHERE id = ? AND tenant_id = ? AND status != 'deleted'",
                (*values, dataset_id, tenant_id),
            ).rowcount
            row = c.execute("SELECT * FROM datasets WHERE id = ? AND tenant_id = ?", (dataset_id, tenant_id)).fetchone()
            if changed:
                ds = _dataset(row)
                emit(c, tenant_id, "dataset.updated", ev.dataset_updated(ds, [k for k in changes if k != "updated_at"]), ds.updated_at)
            return row

        row = await self.write(op, quick=True)
        return None if row is None else _dataset(row)

    async def list_catalog(self, after: int | None, limit: int) -> list[CatalogEntry]:
        clause, params = _page_clause(after)
        rows = await self.read(
            lambda c: c.execute(
                f"SELECT d.*, t.name AS provider_name FROM datasets d JOIN tenants t ON t.id = d.tenant_id"
                f" WHERE {IN_CATALOG} {clause.replace('seq', 'd.seq')}"
                f" ORDER BY d.seq DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        )
        return [CatalogEntry(_dataset(r), r["provider_name"]) for r in rows]

    # -- idempotency ----------------------------------------------------------------
    async def idempotency_begin(
        self,
        principal: str,
        key: str,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        stale_before: datetime,
    ) -> IdempotencyRecord | None:
        def op(c: sqlite3.Connection) -> sqlite3.Row | None:
            row = c.execute("SELECT * FROM idempotency_keys WHERE principal = ? AND key = ?", (principal, key)).fetchone()
            if row is not None:
                expired = row["expires_at"] <= ts(now)
                dead = row["state"] == "in_progress" and row["locked_at"] < ts(stale_before)
                if not (expired or dead):
                    return row
                c.execute("DELETE FROM idempotency_keys WHERE principal = ? AND key = ?", (principal, key))
            c.execute(
                "INSERT INTO idempotency_keys (principal, key, fingerprint, state, created_at, locked_at, expires_at)"
                " VALUES (?, ?, ?, 'in_progress', ?, ?, ?)",
                (principal, key, fingerprint, ts(now), ts(now), ts(expires_at)),
            )
            return None

        row = await self.write(op, quick=True, durable=False)  # finish's fsync covers it (see the Store method)
        return None if row is None else _idem(row)

    async def idempotency_finish(self, principal: str, key: str, status_code: int, response: bytes) -> None:
        await self.write(
            lambda c: c.execute(
                "UPDATE idempotency_keys SET state = 'done', status_code = ?, response = ? WHERE principal = ? AND key = ?",
                (status_code, response, principal, key),
            ), quick=True
        )

    async def idempotency_release(self, principal: str, key: str) -> None:
        await self.write(
            lambda c: c.execute(
                "DELETE FROM idempotency_keys WHERE principal = ? AND key = ? AND state = 'in_progress'", (principal, key)
            ), quick=True
        )

    async def purge_idempotency(self, now: datetime) -> int:
        return await self.write(lambda c: c.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (ts(now),)).rowcount)
