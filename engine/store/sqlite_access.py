"""What the SQLite store's parts share: transactions on worker threads, and one-row reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class SqliteAccess:
    """Base of :class:`~engine.store.sqlite.SqliteStore` and its mixins."""

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one read transaction (a snapshot)."""
        raise NotImplementedError

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one write transaction."""
        raise NotImplementedError

    async def one(self, mapper: Callable[[sqlite3.Row], T], sql: str, params: Sequence[Any]) -> T | None:
        """The first row of ``sql`` mapped to a record, or None."""
        row = await self.read(lambda c: c.execute(sql, params).fetchone())
        return None if row is None else mapper(row)
