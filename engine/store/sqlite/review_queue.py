"""The admin review queue in SQLite (mixed into :class:`SqliteStore`), newest or oldest first.

Newest first is the API's usual order (``seq`` descending). Oldest first walks
``(uploaded_at, seq)`` upwards: objects join the queue when their upload is confirmed, so
a new arrival always sorts after every object already there, and a client paging forward
(or polling with the position after its last object) sees it. Each review state is read
as its own range of ``objects_review_age`` (migration 0070) and the ranges are merged,
so a page costs a few index steps per state whatever the queue's length.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.store.records import ObjectRecord, QueueFilter
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.objects import _object
from engine.store.sqlite.sqltime import ts


def _narrowing(f: QueueFilter) -> tuple[list[str], list[Any]]:
    """The filter's clauses besides the review state."""
    where = ["uploaded_at IS NOT NULL", "status != 'deleted'"]
    params: list[Any] = []
    for column, value in (("tenant_id", f.tenant_id), ("dataset_id", f.dataset_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if f.mime_types is not None:
        where.append(f"mime_type IN ({', '.join('?' * len(f.mime_types))})")
        params.extend(f.mime_types)
    if f.uploaded_from is not None:
        where.append("uploaded_at >= ?")
        params.append(ts(f.uploaded_from))
    if f.uploaded_to is not None:
        where.append("uploaded_at < ?")
        params.append(ts(f.uploaded_to))
    return where, params


class ReviewQueueMixin(SqliteAccess):
    async def list_review_queue(self, f: QueueFilter, after: int | None, limit: int, *, oldest_first: bool = False) -> list[ObjectRecord]:
        """A page of the queue after the object at ``seq = after`` (in the order asked for)."""
        where, params = _narrowing(f)
        if not oldest_first:
            states = f"review_state IN ({', '.join('?' * len(f.review_states))})"
            return await self.newest_page(_object, "objects", [states, *where], [*f.review_states, *params], after, limit)

        def op(c: sqlite3.Connection) -> list[sqlite3.Row]:
            clauses, args = list(where), list(params)
            if after is not None:
                anchor = c.execute("SELECT uploaded_at FROM objects WHERE seq = ?", (after,)).fetchone()
                if anchor is None or anchor[0] is None:
                    return []  # not a position in any queue
                clauses.append("(uploaded_at, seq) > (?, ?)")
                args.extend([anchor[0], after])
            arm = f"SELECT * FROM objects WHERE review_state = ? AND {' AND '.join(clauses)} ORDER BY uploaded_at, seq LIMIT ?"
            sql = " UNION ALL ".join(f"SELECT * FROM ({arm}) AS s{i}" for i in range(len(f.review_states))) + " ORDER BY uploaded_at, seq LIMIT ?"
            values: list[Any] = []
            for state in f.review_states:
                values.extend([state, *args, limit])
            return c.execute(sql, (*values, limit)).fetchall()

        return [_object(r) for r in await self.read(op)]
