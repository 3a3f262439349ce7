"""What the PostgreSQL store's parts share: transactions run on the asyncio side.

asyncpg is an asyncio library; the engine runs on Trio. Every store operation is one
coroutine function ``op(conn, *args)`` that runs *entirely* on the asyncio loop that
``trio_asyncio.open_loop()`` provides, inside one transaction: one bridge crossing per
operation (~90 µs), not one per statement.

* Write transactions are SERIALIZABLE and retried on serialization failures and
  deadlocks, so an operation keeps the same all-or-nothing, one-at-a-time meaning it has
  on SQLite (where a single writer runs at once) even with several engine processes on
  one database. An operation must therefore be safe to run again from the start: it
  only talks to the database.
* Read transactions are REPEATABLE READ and READ ONLY: one consistent snapshot. A lookup
  of one statement (:meth:`PgAccess.one`) runs without BEGIN and COMMIT around it: a
  statement is its own snapshot, and the two round trips were most of a lookup's cost.
* A connection goes back to the pool as it is, without asyncpg's reset query (``UNLISTEN
  *; RESET ALL; …``, a round trip per operation): nothing here changes session state
  (settings are ``SET LOCAL``, advisory locks transaction-level, the one LISTEN connection
  unlistens before it is released), and asyncpg still rolls back an open transaction.
* A Trio cancellation never interrupts an operation half-way (the call is shielded): a
  cancelled caller waits for its transaction to commit or roll back, so no pooled
  connection is left mid-transaction. ``store.command_timeout_seconds`` bounds a stuck
  statement instead.
* ``?`` placeholders are accepted and rewritten to ``$1, $2, …`` (see :class:`PgConn`).
* Driver errors are translated at this boundary (:func:`translate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import asyncpg
import trio
import trio_asyncio

from engine.errors import StoreError, UniqueViolation

T = TypeVar("T")

RETRIES = 12

# A '?' outside quotes; the strings this store writes have no '?' in literals.
_QMARK = re.compile(r"\?")


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """``sql`` with each ``?`` placeholder replaced by ``$1``, ``$2``, … in order."""
    counter = iter(range(1, 10_000))
    return _QMARK.sub(lambda _m: f"${next(counter)}", sql)


def affected(status: str) -> int:
    """Rows affected, from a command status such as ``'DELETE 3'`` or ``'INSERT 0 1'``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def pg_text(value: str | None) -> str | None:
    """A message the engine composed from outside text (an import error quoting a CSV header,
    a webhook receiver's answer), fit for a text column: PostgreSQL text cannot hold NUL
    (SQLite can), so NUL becomes U+FFFD rather than failing the whole write."""
    return None if value is None else value.replace("\x00", "\ufffd")


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Map asyncpg and connection errors onto the engine's store errors."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(str(exc)) from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"postgresql error: {exc.__class__.__name__}: {exc}") from exc
    except (TimeoutError, asyncpg.InterfaceError, OSError) as exc:
        raise StoreError(f"postgresql unavailable: {exc.__class__.__name__}: {exc}") from exc


class PgConn:
    """An asyncpg connection that takes ``?`` placeholders. Use it on the asyncio side only."""

    __slots__ = ("raw",)

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.raw.fetch(numbered(sql), *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.raw.fetchrow(numbered(sql), *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.raw.fetchval(numbered(sql), *args)

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it affected."""
        return affected(await self.raw.execute(numbered(sql), *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.raw.executemany(numbered(sql), rows)


_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


class PgAccess:
    """Base of :class:`~engine.store.postgres.PgStore` and its mixins."""

    _pool: asyncpg.Pool
    # The loop of the ``open_loop()`` the store was opened in: callers from Trio tasks
    # outside that block (tests, tools) still reach it.
    _loop: Any = None

    async def _transaction(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], readonly: bool, single: bool) -> T:
        # asyncio side.
        if single:  # one read-only statement: its own snapshot
            async with self._pool.acquire() as raw:
                return await fn(PgConn(raw), *args)
        isolation = "repeatable_read" if readonly else "serializable"
        for attempt in range(RETRIES):
            async with self._pool.acquire() as raw:
                try:
                    async with raw.transaction(isolation=isolation, readonly=readonly):
                        return await fn(PgConn(raw), *args)
                except _RETRYABLE:
                    if attempt == RETRIES - 1:
                        raise
            await asyncio.sleep(random.uniform(0, 0.002 * 2**min(attempt, 6)))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _run(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], readonly: bool, single: bool = False) -> T:
        with trio.CancelScope(shield=True), translate():
            result: T = await trio_asyncio.aio_as_trio(self._transaction, loop=self._loop)(fn, args, readonly, single)
        return result

    async def read(self, fn: Callable[..., Awaitable[T]], *args: Any, single: bool = False) -> T:
        """Run ``await fn(conn, *args)`` (``conn`` a :class:`PgConn`) in one read-only snapshot.
        ``single``: ``fn`` runs one SELECT, whose own snapshot suffices (no BEGIN and COMMIT)."""
        return await self._run(fn, args, True, single)

    async def write(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(conn, *args)`` in one serializable write transaction (retried on conflicts)."""
        return await self._run(fn, args, False)

    async def one(self, mapper: Callable[[asyncpg.Record], T], sql: str, params: Sequence[Any]) -> T | None:
        """The first row of ``sql`` mapped to a record, or None."""

        async def op(c: PgConn) -> asyncpg.Record | None:
            return await c.fetchrow(sql, *params)

        row = await self.read(op, single=True)
        return None if row is None else mapper(row)

    async def newest_page(
        self, mapper: Callable[[asyncpg.Record], T], table: str, where: list[str], params: list[Any], after: int | None, limit: int
    ) -> list[T]:
        """A cursor page of ``table`` newest first: rows matching every ``where`` clause, before ``after``."""
        if after is not None:
            where, params = [*where, "seq < ?"], [*params, after]
        sql = f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(sql, *params, limit)

        return [mapper(r) for r in await self.read(op)]
