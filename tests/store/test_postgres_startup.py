"""Several engine processes starting at once on one PostgreSQL database (PostgreSQL passes only).

Each process migrates and then moves a pre-0031 search index into the folded one
(``upgrade_legacy_index``). One of them does the work under an advisory lock; the others
must find it done, not fail: a process that began its transaction before the winner
dropped the old tables still had them in its catalog cache, looked them up, and died with
``relation "chunk_index" does not exist`` (seen in tests/multiprocess: one of three
engines failed to start).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import asyncpg

from engine.store.postgres.search import _UPGRADE_LOCK, upgrade_legacy_index
from engine.store.postgres.store import _MIGRATION_LOCK, migrate
from tests.conftest import backend_overrides


def _run(coro: Any) -> Any:
    # Its own thread: the test's thread may run Trio.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _waiting_for_advisory_lock(conn: asyncpg.Connection) -> None:
    while not await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
        await asyncio.sleep(0.01)


async def _has_table(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


def test_a_process_that_waited_finds_the_upgrade_done() -> None:
    url = backend_overrides()["store.url"]

    async def run() -> int:
        winner, other = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            assert await _has_table(winner, "chunk_index")  # a database migrated from scratch has the old table
            await winner.execute("SELECT pg_advisory_lock($1)", _UPGRADE_LOCK)
            waiting = asyncio.create_task(upgrade_legacy_index(other))
            await asyncio.wait_for(_waiting_for_advisory_lock(winner), 10)
            # The winner's upgrade (nothing to copy) drops the old tables, then lets go.
            await winner.execute("DROP TABLE chunk_index; DROP TABLE IF EXISTS chunk_vectors")
            await winner.execute("SELECT pg_advisory_unlock($1)", _UPGRADE_LOCK)
            moved: int = await asyncio.wait_for(waiting, 10)
            assert not await _has_table(other, "chunk_index")
            return moved
        finally:
            await winner.close()
            await other.close()

    assert _run(run()) == 0


def test_a_process_that_waited_finds_the_migrations_applied() -> None:
    url = backend_overrides()["store.url"]

    async def run() -> list[int]:
        first, other = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            await first.execute("DROP TABLE schema_migrations")  # as if nothing were applied yet...
            await first.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            waiting = asyncio.create_task(migrate(other))
            await asyncio.wait_for(_waiting_for_advisory_lock(first), 10)
            # ...then the first process records every migration as applied and lets go.
            await first.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await first.execute(
                "INSERT INTO schema_migrations (version, name) SELECT v, 'test' FROM unnest($1::int[]) AS v",
                [number for number, _, _ in _all_migrations()],
            )
            await first.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
            applied: list[int] = await asyncio.wait_for(waiting, 10)
            return applied
        finally:
            await first.close()
            await other.close()

    assert _run(run()) == []


def _all_migrations() -> list[tuple[int, str, str]]:
    from engine.store.postgres.store import _migrations

    return _migrations()
