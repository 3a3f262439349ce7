"""The SQLite store: migrations, error translation, and never blocking the Trio loop."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

import pytest
import trio

from engine.errors import UniqueViolation
from engine.store.records import Membership, Tenant, User
from engine.store.sqlite import SqliteStore, _migrations


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


async def test_unique_violations_are_translated(tmp_path):
    now = datetime.now(UTC)
    async with SqliteStore.open(tmp_path / "s.db") as store:
        await store.create_account(Tenant("tnt_a", "a", now), User("usr_a", "a@x.io", None, "h", False, now), Membership("tnt_a", "usr_a", "owner", now))
        with pytest.raises(UniqueViolation):
            await store.create_account(Tenant("tnt_b", "b", now), User("usr_b", "a@x.io", None, "h", False, now), Membership("tnt_b", "usr_b", "owner", now))
        # the failed transaction left nothing behind
        assert await store.get_tenant("tnt_b") is None


async def test_slow_sqlite_work_does_not_stall_the_event_loop(tmp_path):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.005)

    async with SqliteStore.open(tmp_path / "s.db") as store, trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0)
        before = ticks
        await store.read(lambda conn: time.sleep(0.3))
        await store.write(lambda conn: time.sleep(0.3))
        nursery.cancel_scope.cancel()
    # had the sleeps run on the Trio thread, the ticker could not have run in between
    assert ticks - before >= 10


async def test_a_failed_write_rolls_back(tmp_path):
    async with SqliteStore.open(tmp_path / "s.db") as store:
        def op(conn):
            conn.execute("INSERT INTO tenants (id, name, created_at) VALUES ('tnt_x', 'x', '2026')")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await store.write(op)
        assert await store.get_tenant("tnt_x") is None
        await store.ping()


async def test_only_writes_asked_to_be_lazy_skip_the_fsync(tmp_path):
    """Import batches commit with synchronous=NORMAL (redone from their file after a power
    loss); every other write keeps FULL, and a failed lazy write leaves FULL behind too."""

    def level(c: sqlite3.Connection) -> int:
        return int(c.execute("PRAGMA synchronous").fetchone()[0])

    async with SqliteStore.open(tmp_path / "s.db") as store:
        assert await store.write(level) == 2
        assert await store.write(level, durable=False) == 1
        assert await store.write(level) == 2

        def fails(c: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("boom")

        with pytest.raises(Exception, match="boom"):
            await store.write(fails, durable=False)
        assert await store.write(level) == 2
