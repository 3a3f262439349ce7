"""The admin review queue in PostgreSQL (mixed into :class:`PgStore`).

The same two orders as the SQLite store (``engine/store/sqlite/review_queue.py`` says why
oldest first walks ``(uploaded_at, seq)``): each review state is one range of
``objects_review_age`` (migration 0070), ``UNION ALL`` merges them, and the position
after a cursor is a row comparison the index answers directly.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from engine.store.postgres.access import PgAccess, PgConn
from engine.store.postgres.objects import _object
from engine.store.records import ObjectRecord, QueueFilter


def _narrowing(f: QueueFilter) -> tuple[list[str], list[Any]]:
    """The filter's clauses besides the review state."""
    where = ["uploaded_at IS NOT NULL", "status != 'deleted'"]
    params: list[Any] = []
    for clause, value in (
        ("tenant_id = ?", f.tenant_id),
        ("dataset_id = ?", f.dataset_id),
        ("mime_type = ANY(?)", None if f.mime_types is None else list(f.mime_types)),
        ("uploaded_at >= ?", f.uploaded_from),
        ("uploaded_at < ?", f.uploaded_to),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    return where, params


class ReviewQueueMixin(PgAccess):
    async def list_review_queue(self, f: QueueFilter, after: int | None, limit: int, *, oldest_first: bool = False) -> list[ObjectRecord]:
        """A page of the queue after the object at ``seq = after`` (in the order asked for)."""
        where, params = _narrowing(f)
        if not oldest_first:
            return await self.newest_page(_object, "objects", ["review_state = ANY(?)", *where], [list(f.review_states), *params], after, limit)

        async def op(c: PgConn) -> list[asyncpg.Record]:
            clauses, args = list(where), list(params)
            if after is not None:
                anchor = await c.fetchval("SELECT uploaded_at FROM objects WHERE seq = ?", after)
                if anchor is None:
                    return []  # not a position in any queue
                clauses.append("(uploaded_at, seq) > (?, ?)")
                args.extend([anchor, after])
            arm = f"SELECT * FROM objects WHERE review_state = ? AND {' AND '.join(clauses)} ORDER BY uploaded_at, seq LIMIT ?"
            sql = " UNION ALL ".join(f"SELECT * FROM ({arm}) AS s{i}" for i in range(len(f.review_states)))
            values: list[Any] = []
            for state in f.review_states:
                values.extend([state, *args, limit])
            return await c.fetch(f"{sql} ORDER BY uploaded_at, seq LIMIT ?", *values, limit)

        return [_object(r) for r in await self.read(op)]
