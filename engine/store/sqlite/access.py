"""What the SQLite store's parts share: transactions on worker threads, and one-row reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class SqliteAccess:
    """Base of :class:`~engine.store.sqlite.SqliteStore` and its mixins."""

    async def write(self, fn: Callable[..., T], *args: Any, durable: bool = True, quick: bool = False) -> T:
        """Run ``fn(conn, *args)`` in one write transaction; ``durable=False`` commits
        without waiting for the disk (it survives a crash of the process, maybe not a
        power loss; the next durable commit makes it durable too). ``quick``: a write of
        a few rows, run on the calling (Trio) thread."""
        raise NotImplementedError

    async def read(self, fn: Callable[..., T], *args: Any, quick: bool = False, single: bool = False) -> T:
        """Run ``fn(conn, *args)`` in one read transaction (a snapshot). ``quick``: a read
        by key of a few rows, run on the calling (Trio) thread. ``single``: ``fn`` runs one
        statement, whose own snapshot suffices (no BEGIN and COMMIT around it)."""
        raise NotImplementedError

    async def one(self, mapper: Callable[[sqlite3.Row], T], sql: str, params: Sequence[Any]) -> T | None:
        """The first row of ``sql`` (a lookup by key: a quick read of one statement) mapped to a record, or None."""
        row = await self.read(lambda c: c.execute(sql, params).fetchone(), quick=True, single=True)
        return None if row is None else mapper(row)

    async def newest_page(
        self, mapper: Callable[[sqlite3.Row], T], table: str, where: list[str], params: list[Any], after: int | None, limit: int
    ) -> list[T]:
        """A cursor page of ``table`` newest first: rows matching every ``where`` clause, before ``after``."""
        if after is not None:
            where, params = [*where, "seq < ?"], [*params, after]
        sql = f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        rows = await self.read(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [mapper(r) for r in rows]
