"""Record imports and datapoints in SQLite (mixed into SqliteStore).

A batch of accepted records, the import's counters, its first errors and its checkpoint
(bytes and lines of the file fully handled) are one transaction, so an import resumed
after a crash starts exactly where the committed records end: nothing lost, nothing twice.
Accepted records are stored a batch per row (``datapoint_chunks``); a datapoint's position
is ``(chunk seq << 16) | index``, which keeps cursors opaque integers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from engine.store import webhook_events as ev
from engine.store.packing import unpack
from engine.store.records import IN_LIVE_DATASET, Datapoint, ImportJob
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.sqltime import dt, ts
from engine.store.sqlite.webhooks import emit

T = TypeVar("T")
ERRORS_KEPT = 1000
CHUNK_BITS = 16

_COLUMNS = ("id", "tenant_id", "dataset_id", "filename", "format", "status", "expires_at", "created_at")


def _import(r: sqlite3.Row) -> ImportJob:
    return ImportJob(
        id=r["id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], filename=r["filename"], format=r["format"],
        status=r["status"], expires_at=dt(r["expires_at"]), created_at=dt(r["created_at"]),  # type: ignore[arg-type]
        arrival=r["arrival"], size_bytes=r["size_bytes"], accepted_count=r["accepted_count"], rejected_count=r["rejected_count"],
        reason=r["reason"], checkpoint_offset=r["checkpoint_offset"],
        checkpoint_line=r["checkpoint_line"], parsed_count=r["parsed_count"], received_at=dt(r["received_at"]),
        started_at=dt(r["started_at"]), finished_at=dt(r["finished_at"]), seq=r["seq"],
    )


def _get(c: sqlite3.Connection, import_id: str) -> ImportJob:
    return _import(c.execute("SELECT * FROM imports WHERE id = ?", (import_id,)).fetchone())


def _with_errors(c: sqlite3.Connection, imp: ImportJob) -> ImportJob:
    rows = c.execute(
        "SELECT line, field, message FROM import_errors WHERE import_id = ? ORDER BY line LIMIT ?", (imp.id, ERRORS_KEPT)
    ).fetchall()
    errors = tuple({"line": r[0], "field": r[1], "message": r[2]} for r in rows)
    return ImportJob(**{**imp.__dict__, "errors": errors})


class ImportsMixin(SqliteAccess):
    async def create_import(self, imp: ImportJob) -> None:
        await self.write(
            lambda c: c.execute(
                f"INSERT INTO imports ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [ts(v) if isinstance(v, datetime) else v for v in (getattr(imp, col) for col in _COLUMNS)],
            ), quick=True
        )

    async def get_import(self, tenant_id: str, import_id: str) -> ImportJob | None:
        """The import with its first errors."""

        def op(c: sqlite3.Connection) -> ImportJob | None:
            row = c.execute(
                "SELECT * FROM imports i WHERE id = ? AND tenant_id = ?" + IN_LIVE_DATASET.format(t="i"), (import_id, tenant_id)
            ).fetchone()
            return None if row is None else _with_errors(c, _import(row))

        return await self.read(op)

    async def get_import_any(self, import_id: str) -> ImportJob | None:
        return await self.one(_import, "SELECT * FROM imports WHERE id = ?", (import_id,))

    async def list_imports(self, tenant_id: str, dataset_id: str, after: int | None, limit: int) -> list[ImportJob]:
        clause, params = ("AND seq < ?", [after]) if after is not None else ("", [])
        def op(c: sqlite3.Connection) -> list[ImportJob]:
            rows = c.execute(
                f"SELECT * FROM imports WHERE tenant_id = ? AND dataset_id = ? {clause} ORDER BY seq DESC LIMIT ?",
                (tenant_id, dataset_id, *params, limit),
            ).fetchall()
            return [_with_errors(c, _import(r)) for r in rows]

        return await self.read(op)

    async def import_arrived(self, import_id: str, size: int, now: datetime, next_dataset_status: Callable[[str], str]) -> ImportJob | None:
        """uninitialised → queued, taking the next place in the dataset's queue; None if it was not uninitialised."""

        def op(c: sqlite3.Connection) -> ImportJob | None:
            imp = _get(c, import_id)
            if imp.status != "uninitialised":
                return None
            (last,) = c.execute("SELECT max(arrival) FROM imports WHERE dataset_id = ?", (imp.dataset_id,)).fetchone()
            c.execute(
                "UPDATE imports SET status = 'queued', arrival = ?, size_bytes = ?, received_at = ? WHERE id = ?",
                ((last or 0) + 1, size, ts(now), import_id),
            )
            (status,) = c.execute("SELECT status FROM datasets WHERE id = ?", (imp.dataset_id,)).fetchone()
            target = next_dataset_status(status)
            if target != status:
                c.execute("UPDATE datasets SET status = ?, updated_at = ? WHERE id = ?", (target, ts(now), imp.dataset_id))
            return _get(c, import_id)

        return await self.write(op, quick=True)

    async def claim_next_import(self, dataset_id: str, now: datetime) -> ImportJob | None:
        """The import the dataset should be working on: the one processing (after a restart),
        else the earliest queued one, now marked processing; None when the queue is empty."""

        def op(c: sqlite3.Connection) -> ImportJob | None:
            row = c.execute("SELECT * FROM imports WHERE dataset_id = ? AND status = 'processing' LIMIT 1", (dataset_id,)).fetchone()
            if row is not None:
                return _import(row)
            row = c.execute(
                "SELECT * FROM imports WHERE dataset_id = ? AND status = 'queued' ORDER BY arrival LIMIT 1", (dataset_id,)
            ).fetchone()
            if row is None:
                return None
            c.execute("UPDATE imports SET status = 'processing', started_at = ? WHERE id = ?", (ts(now), row["id"]))
            return _get(c, row["id"])

        return await self.write(op, quick=True)

    async def datasets_with_pending_imports(self) -> list[str]:
        rows = await self.read(
            lambda c: c.execute("SELECT DISTINCT dataset_id FROM imports WHERE status IN ('queued', 'processing')").fetchall()
        )
        return [r[0] for r in rows]

    async def insert_batch(
        self,
        import_id: str,
        lines: Sequence[int],
        packed: bytes,
        errors: Sequence[dict[str, Any]],
        rejected: int,
        parsed: int,
        offset: int,
        line: int,
        now: datetime,
    ) -> ImportJob:
        """Accepted records, counters, first errors and the checkpoint, in one transaction
        (not waiting for the disk: see the Store protocol)."""

        def op(c: sqlite3.Connection) -> ImportJob:
            imp = _get(c, import_id)
            if imp.status != "processing" or offset <= imp.checkpoint_offset:
                return imp  # a stale or repeated batch changes nothing
            if lines:
                c.execute(
                    "INSERT INTO datapoint_chunks (dataset_id, import_id, count, lines, records, packed) VALUES (?, ?, ?, ?, '', ?)",
                    (imp.dataset_id, import_id, len(lines), orjson.dumps(list(lines)).decode(), packed),
                )
            room = ERRORS_KEPT - c.execute("SELECT errors_kept FROM imports WHERE id = ?", (import_id,)).fetchone()[0]
            kept = list(errors[: max(room, 0)])
            if kept:
                c.executemany(
                    "INSERT INTO import_errors (import_id, line, field, message) VALUES (?, ?, ?, ?)",
                    [(import_id, e["line"], e["field"], e["message"]) for e in kept],
                )
            c.execute(
                "UPDATE imports SET accepted_count = accepted_count + ?, rejected_count = rejected_count + ?,"
                " parsed_count = parsed_count + ?, errors_kept = errors_kept + ?, checkpoint_offset = ?, checkpoint_line = ?"
                " WHERE id = ?",
                (len(lines), rejected, parsed, len(kept), offset, line, import_id),
            )
            if lines:
                c.execute(
                    "UPDATE datasets SET total_datapoint_count = total_datapoint_count + ?, last_ingest_at = ?, updated_at = ?,"
                    " status = CASE WHEN status IN ('draft', 'ingesting') THEN 'active' ELSE status END WHERE id = ?",
                    (len(lines), ts(now), ts(now), imp.dataset_id),
                )
            return _get(c, import_id)  # counters and checkpoint; errors are read with get_import

        return await self.write(op, durable=False)

    async def finish_import(self, import_id: str, status: str, reason: str | None, now: datetime) -> ImportJob:
        def op(c: sqlite3.Connection) -> ImportJob:
            finished = c.execute(
                "UPDATE imports SET status = ?, reason = ?, finished_at = ?, started_at = coalesce(started_at, ?)"
                " WHERE id = ? AND status = 'processing'",
                (status, reason, ts(now), ts(now), import_id),
            ).rowcount
            imp = _get(c, import_id)
            if finished:
                emit(c, imp.tenant_id, "import.finished", ev.import_finished(imp), now)
            return imp

        return await self.write(op, quick=True)

    async def list_datapoints(self, tenant_id: str, dataset_id: str, after: int | None, limit: int) -> list[Datapoint]:
        """Accepted records in import order, from just after position ``after``."""
        chunk_seq, skip = (after >> CHUNK_BITS, (after & ((1 << CHUNK_BITS) - 1)) + 1) if after is not None else (0, 0)

        def op(c: sqlite3.Connection) -> list[Datapoint]:
            out: list[Datapoint] = []
            cursor_seq, first = chunk_seq, True
            while len(out) < limit:
                rows = c.execute(
                    "SELECT d.* FROM datapoint_chunks d JOIN datasets s ON s.id = d.dataset_id"
                    " WHERE d.dataset_id = ? AND s.tenant_id = ? AND d.seq >= ? ORDER BY d.seq LIMIT 4",
                    (dataset_id, tenant_id, cursor_seq),
                ).fetchall()
                if not rows:
                    break
                for r in rows:
                    start = skip if first and r["seq"] == chunk_seq else 0
                    first = False
                    lines = orjson.loads(r["lines"])
                    records = unpack(r["packed"]) if r["packed"] is not None else r["records"].split("\n")
                    for i in range(start, r["count"]):
                        out.append(Datapoint(r["dataset_id"], r["import_id"], lines[i], records[i], (r["seq"] << CHUNK_BITS) | i))
                        if len(out) == limit:
                            return out
                    cursor_seq = r["seq"] + 1
            return out

        return await self.read(op)
