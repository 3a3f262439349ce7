"""The SQLite store: migrations, error translation, and never blocking the Trio loop."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

import pytest
import trio

import engine.store.sqlite.store as store_module
from engine.errors import UniqueViolation
from engine.store.records import Membership, Tenant, User
from engine.store.sqlite.pipeline import DUE_DATASETS_SQL, DUE_OBJECTS_SQL, NEXT_DEADLINE_SQL
from engine.store.sqlite.store import SqliteStore, _migrations


async def test_migrations_apply_once_and_record_their_numbers(tmp_path):
    path = tmp_path / "s.db"
    async with SqliteStore.open(path):
        pass
    async with SqliteStore.open(path):  # reopening applies nothing twice
        pass
    versions = [row[0] for row in sqlite3.connect(path).execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [number for number, _, _ in _migrations()]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.parametrize(("sql", "args"), [(NEXT_DEADLINE_SQL, ()), (DUE_DATASETS_SQL, ("2026-01-01", 10)),
                                           (DUE_OBJECTS_SQL, ("ds_1", "2026-01-01"))])
async def test_review_clock_queries_read_a_range_of_the_due_index(tmp_path, sql, args):
    # Not objects_review_queue (review_state, seq), which reads every staged object: the
    # clock runs these after confirmations, and staged objects pile up for 72 hours.
    path = tmp_path / "s.db"
    async with SqliteStore.open(path):
        pass
    plan = " ".join(row[3] for row in sqlite3.connect(path).execute("EXPLAIN QUERY PLAN " + sql, args))
    assert "INDEX objects_review_due (review_state=? AND status=?" in plan, plan


async def test_unique_violations_are_translated(tmp_path):
    now = datetime.now(UTC)
    async with SqliteStore.open(tmp_path / "s.db") as store:
        await store.create_account(Tenant("tnt_a", "a", now), User("usr_a", "a@x.io", None, "h", False, now), Membership("tnt_a", "usr_a", "owner", now))
        with pytest.raises(UniqueViolation):
            await store.create_account(Tenant("tnt_b", "b", now), User("usr_b", "a@x.io", None, "h", False, now), Membership("tnt_b", "usr_b", "owner", now))
        # the failed transaction left nothing behind
        assert await store.get_tenant("tnt_b") is None


class Ticker:
    """Counts how often the Trio loop got to run a task every 5 ms."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await trio.sleep(0.005)


async def test_slow_sqlite_work_does_not_stall_the_event_loop(tmp_path):
    ticker = Ticker()
    async with SqliteStore.open(tmp_path / "s.db") as store, trio.open_nursery() as nursery:
        nursery.start_soon(ticker.run)
        await trio.sleep(0)
        before = ticker.ticks
        await store.read(lambda conn: time.sleep(0.3))
        await store.write(lambda conn: time.sleep(0.3))
        nursery.cancel_scope.cancel()
    # had the sleeps run on the Trio thread, the ticker could not have run in between
    assert ticker.ticks - before >= 10


async def test_a_failed_write_rolls_back(tmp_path):
    async with SqliteStore.open(tmp_path / "s.db") as store:
        def op(conn):
            conn.execute("INSERT INTO tenants (id, name, created_at) VALUES ('tnt_x', 'x', '2026')")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await store.write(op)
        assert await store.get_tenant("tnt_x") is None
        await store.ping()


async def test_writes_on_threads_wait_for_the_group_fsync_unless_asked_to_be_lazy(tmp_path, monkeypatch):
    """No write fsyncs in its COMMIT (synchronous=NORMAL), so a write on a worker thread never
    holds the writer, nor a dataset's actor, through an fsync of its own: a durable one then
    waits for a group-committed fsync of the WAL that began after its commit, as a quick one
    does; an import batch (durable=False, redone from its file after a power loss) does not."""

    def level(c: sqlite3.Connection) -> int:
        return int(c.execute("PRAGMA synchronous").fetchone()[0])

    async with SqliteStore.open(tmp_path / "s.db") as store:
        fsyncs: list[int] = []
        real = store._fsync_wal
        monkeypatch.setattr(store, "_fsync_wal", lambda checkpoint: (fsyncs.append(store._committed), real(checkpoint)))
        assert await store.write(level) == 1
        assert fsyncs == [1] and store._synced == 1
        assert await store.write(level, durable=False) == 1
        assert fsyncs == [1]

        def fails(c: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("boom")

        with pytest.raises(Exception, match="boom"):
            await store.write(fails)
        await store.write(_tenant(1))
        assert fsyncs[-1] == store._committed and store._synced == store._committed  # covers the lazy one too


def _tenant(n: int):
    def op(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, '2026-01-01T00:00:00+00:00')", (f"tnt_{n}", f"t{n}"))

    return op


async def test_quick_writes_return_only_once_an_fsync_after_their_commit_ended(tmp_path, monkeypatch):
    """Group commit: quick writes run on the Trio thread without fsync; a waiting writer
    fsyncs the WAL for every commit made by then. Many concurrent writers share fsyncs,
    and none returns before one that began after its commit has finished."""
    async with SqliteStore.open(tmp_path / "s.db") as store:
        fsyncs: list[int] = []  # commits made when each fsync began
        real = store._fsync_wal

        def counting_fsync(checkpoint: bool) -> None:
            seen = store._committed
            time.sleep(0.01)  # a slow disk: commits pile up behind it
            real(checkpoint)
            fsyncs.append(seen)

        monkeypatch.setattr(store, "_fsync_wal", counting_fsync)
        # Quick work stays on the Trio thread however loaded the machine is: a backoff to
        # worker threads would make the commit numbers below race (tested on its own).
        monkeypatch.setattr(store_module, "_clocks", lambda: (0.0, 0.0, 0))
        returned: list[tuple[int, list[int]]] = []  # (its commit's number, the fsyncs finished when it returned)

        async def writer(n: int) -> None:
            mine = []

            def op(c: sqlite3.Connection) -> None:
                _tenant(n)(c)
                mine.append(store._committed + 1)  # counted once COMMIT returns

            await store.write(op, quick=True)
            returned.append((mine[0], list(fsyncs)))

        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(writer, n)
        assert sorted(number for number, _ in returned) == list(range(1, 51))
        assert 1 <= len(fsyncs) < 25  # shared
        for number, finished in returned:  # an fsync begun after this commit had finished
            assert any(seen >= number for seen in finished)
        assert store._synced == 50
        assert sqlite3.connect(tmp_path / "s.db").execute("SELECT count(*) FROM tenants").fetchone()[0] == 50


async def test_quick_writes_checkpoint_the_wal_off_the_trio_thread(tmp_path, monkeypatch):
    import engine.store.sqlite.store as module

    monkeypatch.setattr(module, "CHECKPOINT_COMMITS", 5)
    async with SqliteStore.open(tmp_path / "s.db") as store:
        checkpoints = []
        real = store._fsync_wal
        monkeypatch.setattr(store, "_fsync_wal", lambda checkpoint: (checkpoints.append(checkpoint), real(checkpoint)))
        for n in range(12):
            await store.write(_tenant(n), quick=True)
        assert checkpoints.count(True) == 2  # after the 5th and the 10th commit
        # with autocheckpoint off during quick writes, only those checkpoints moved pages into the database file
        busy, log, done = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and done == log


async def test_a_quick_write_waits_on_a_worker_thread_while_another_process_writes(tmp_path):
    ticker = Ticker()
    async with SqliteStore.open(tmp_path / "s.db") as store, trio.open_nursery() as nursery:
        await store.write(_tenant(0), quick=True)
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        nursery.start_soon(ticker.run)
        done = trio.Event()

        async def write() -> None:
            await store.write(_tenant(1), quick=True)
            done.set()

        nursery.start_soon(write)
        await trio.sleep(0.3)
        assert not done.is_set() and ticker.ticks >= 10  # waiting on a worker thread, the loop runs on
        assert await store.get_tenant("tnt_0") is not None  # quick reads do not wait for writers
        other.execute("COMMIT")
        await done.wait()
        assert await store.get_tenant("tnt_1") is not None

        other.close()
        nursery.cancel_scope.cancel()


async def test_a_quick_read_that_finds_the_database_busy_is_retried_on_a_worker_thread(tmp_path, monkeypatch):
    """WAL readers wait only in rare moments (another process recovering the WAL): such a
    read goes to a worker thread, where the busy timeout may sleep without stalling the loop."""
    import threading

    from engine.errors import StoreError

    async with SqliteStore.open(tmp_path / "s.db") as store:
        await store.write(_tenant(0), quick=True)
        real, threads = SqliteStore._in_tx, []

        def in_tx(conn, begin, fn, args):
            threads.append(threading.current_thread() is threading.main_thread())
            if conn is store._quick:
                busy = sqlite3.OperationalError("database is locked")
                busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
                raise StoreError("sqlite error: database is locked") from busy
            return real(conn, begin, fn, args)

        monkeypatch.setattr(store, "_in_tx", in_tx)
        assert (await store.get_tenant("tnt_0")).name == "t0"  # type: ignore[union-attr]
        assert threads == [True, False]  # tried on the Trio thread, then read on a worker thread


async def test_a_failed_quick_write_rolls_back_and_leaves_the_writer_as_it_was(tmp_path):
    async with SqliteStore.open(tmp_path / "s.db") as store:
        def op(conn: sqlite3.Connection) -> None:
            _tenant(7)(conn)
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await store.write(op, quick=True)
        assert await store.get_tenant("tnt_7") is None

        def settings(c: sqlite3.Connection) -> tuple[int, int, int]:
            return (c.execute("PRAGMA synchronous").fetchone()[0], c.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
                    c.execute("PRAGMA busy_timeout").fetchone()[0])

        assert await store.write(settings, quick=True) == (1, 0, 0)  # no fsync in COMMIT, no checkpoint, no waiting
        assert await store.write(settings) == (1, 1000, 30000)  # on a worker thread: SQLite's checkpoints, busy timeout
        assert await store.write(settings, durable=False) == (1, 1000, 30000)
        assert await store.write(settings, quick=True) == (1, 0, 0)
        await store.write(_tenant(7), quick=True)
        assert await store.get_tenant("tnt_7") is not None


async def test_deferred_writes_return_at_commit_and_flush_waits_for_the_disk(tmp_path, monkeypatch):
    from engine.store.base import flush_deferred

    async with SqliteStore.open(tmp_path / "s.db") as store:
        fsyncs: list[int] = []
        real = store._fsync_wal
        monkeypatch.setattr(store, "_fsync_wal", lambda checkpoint: (fsyncs.append(store._committed), real(checkpoint)))
        with flush_deferred():
            await store.write(_tenant(1), quick=True)
            await store.write(_tenant(2), quick=True)
        assert fsyncs == [] and store._synced == 0  # committed, readable, not yet known to be on disk
        assert await store.get_tenant("tnt_2") is not None
        await store.flush()
        assert fsyncs == [2] and store._synced == 2
        await store.flush()  # nothing new: no fsync
        assert fsyncs == [2]


def test_the_store_clocks_tell_waiting_from_working():
    import engine.store.sqlite.store as module

    wall0, cpu0, switches0 = module._clocks()
    time.sleep(0.02)
    wall1, cpu1, switches1 = module._clocks()
    assert wall1 - wall0 >= 0.02 and cpu1 - cpu0 < 0.005  # waiting: wall time only
    assert switches1 > switches0  # ... having given the CPU up (blocked)
    end = time.thread_time() + 0.02
    while time.thread_time() < end:
        pass
    _, cpu2, _ = module._clocks()
    assert cpu2 - cpu1 >= 0.02  # working: this thread's CPU time


async def test_quick_work_goes_to_threads_after_a_slow_inline_operation_and_while_cpu_bound_work_runs(tmp_path, monkeypatch):
    """Inline work must not stall the loop: after an inline operation kept it waiting (the
    kernel throttling writes, a cold cache; not merely working), quick work goes to worker
    threads for a while; and
    while CPU-bound threads run (pipeline stages), it would queue for the GIL: threads too."""
    import threading

    import engine.store.sqlite.store as module
    from engine.offload import cpu_bound

    monkeypatch.setattr(module, "INLINE_BACKOFF_SECONDS", 0.2)
    where: list[bool] = []  # ran on the Trio thread?

    # The clocks the store reads, with waiting and working told apart by the probes
    # themselves (a busy loop timed by the kernel's thread clock is preempted for more than
    # 5 ms now and then on a loaded machine): CPU time is wall time minus declared waits.
    # Off the CPU without blocking (preempted, or queued for the GIL) counts as no wait either.
    waited, preempted = [0.0], [0.0]
    monkeypatch.setattr(module, "_clocks", lambda: (
        time.monotonic(), time.monotonic() - waited[0] - preempted[0], round(waited[0] * 1000)))

    def probe(c: sqlite3.Connection, pause: float = 0.0) -> None:
        where.append(threading.current_thread() is threading.main_thread())
        time.sleep(pause)
        waited[0] += pause

    def overtaken(c: sqlite3.Connection) -> None:
        where.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.03)
        preempted[0] += 0.03

    def working(c: sqlite3.Connection) -> None:
        where.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.02)  # counted as work, as a garbage collection is: no thread would be faster

    async with SqliteStore.open(tmp_path / "s.db") as store:
        await store.read(working, quick=True)
        await store.write(working, quick=True)
        await store.read(overtaken, quick=True)
        await store.read(probe, quick=True)
        assert where == [True, True, True, True]  # 20 ms of work each, 30 ms preempted, and no backoff
        where.clear()
        await store.read(probe, quick=True)
        await store.read(probe, 0.03, quick=True)  # slow: kept the loop blocked for 30 ms
        await store.read(probe, quick=True)
        await store.write(probe, quick=True)
        assert where == [True, True, False, False]
        await trio.sleep(0.25)
        await store.write(probe, quick=True)
        assert where[-1] is True  # the backoff is over

        started = threading.Event()
        release = threading.Event()

        def busy() -> None:
            started.set()
            release.wait(5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cpu_bound, busy)
            await trio.to_thread.run_sync(started.wait)
            await store.read(probe, quick=True)
            await store.write(probe, quick=True)
            release.set()
        assert where[-2:] == [False, False]
        await store.read(probe, quick=True)
        assert where[-1] is True


async def test_an_idempotency_claim_waits_for_no_fsync_and_the_finish_makes_it_durable(tmp_path, monkeypatch):
    async with SqliteStore.open(tmp_path / "s.db") as store:
        fsyncs: list[int] = []
        real = store._fsync_wal
        monkeypatch.setattr(store, "_fsync_wal", lambda checkpoint: (fsyncs.append(store._committed), real(checkpoint)))
        now = datetime.now(UTC)
        claim = await store.idempotency_begin("usr_1", "k" * 64, "fp", now, now.replace(year=now.year + 1), now)
        assert claim is None and fsyncs == []  # claimed and visible, not waited on
        again = await store.idempotency_begin("usr_1", "k" * 64, "fp", now, now.replace(year=now.year + 1), now)
        assert again is not None and again.state == "in_progress"
        await store.idempotency_finish("usr_1", "k" * 64, 201, b"sealed")
        assert fsyncs == [3] and store._synced == store._committed == 3  # one fsync, covering both claims too
