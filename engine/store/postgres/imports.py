"""Record imports and datapoints in PostgreSQL (mixed into PgStore).

A batch of accepted records, the import's counters, its first errors and its checkpoint
(bytes and lines of the file fully handled) are one transaction, so an import resumed
after a crash starts exactly where the committed records end: nothing lost, nothing twice.
Accepted records are stored a batch per row (``datapoint_chunks``); a datapoint's position
is ``(chunk seq << 16) | index``, which keeps cursors opaque integers.

Several engine processes may share the database: every write below is one SERIALIZABLE
transaction, retried from the start on a conflict, so two arrivals in one dataset never
take the same place in its queue and two claims never start two imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from engine.store import webhook_events as ev
from engine.store.packing import unpack_text
from engine.store.postgres.access import PgAccess, PgConn, pg_text
from engine.store.postgres.webhooks import emit
from engine.store.records import IN_LIVE_DATASET, Datapoint, ImportJob

ERRORS_KEPT = 1000
CHUNK_BITS = 16

_COLUMNS = ("id", "tenant_id", "dataset_id", "filename", "format", "status", "expires_at", "created_at")


def _import(r: asyncpg.Record) -> ImportJob:
    return ImportJob(
        id=r["id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], filename=r["filename"], format=r["format"],
        status=r["status"], expires_at=r["expires_at"], created_at=r["created_at"],
        arrival=r["arrival"], size_bytes=r["size_bytes"], accepted_count=r["accepted_count"], rejected_count=r["rejected_count"],
        reason=r["reason"], checkpoint_offset=r["checkpoint_offset"],
        checkpoint_line=r["checkpoint_line"], parsed_count=r["parsed_count"], received_at=r["received_at"],
        started_at=r["started_at"], finished_at=r["finished_at"], seq=r["seq"],
    )


async def _row(c: PgConn, import_id: str) -> asyncpg.Record:
    row = await c.fetchrow("SELECT * FROM imports WHERE id = ?", import_id)
    assert row is not None, f"no import {import_id}"  # callers name imports they created
    return row


async def _with_errors(c: PgConn, imps: list[ImportJob]) -> list[ImportJob]:
    """``imps`` with their first errors, read in one statement."""
    rows = await c.fetch(
        "SELECT i.id, e.line, e.field, e.message FROM unnest(?::text[]) AS i(id)"
        " CROSS JOIN LATERAL (SELECT line, field, message FROM import_errors WHERE import_id = i.id ORDER BY line LIMIT ?) e"
        " ORDER BY e.line",
        [imp.id for imp in imps], ERRORS_KEPT,
    )
    errors: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        errors.setdefault(r["id"], []).append({"line": r["line"], "field": r["field"], "message": r["message"]})
    return [ImportJob(**{**imp.__dict__, "errors": tuple(errors.get(imp.id, ()))}) for imp in imps]


class ImportsMixin(PgAccess):
    async def create_import(self, imp: ImportJob) -> None:
        async def op(c: PgConn) -> None:
            await c.execute(
                f"INSERT INTO imports ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                *(getattr(imp, col) for col in _COLUMNS),
            )

        await self.write(op)

    async def get_import(self, tenant_id: str, import_id: str) -> ImportJob | None:
        """The import with its first errors."""

        async def op(c: PgConn) -> ImportJob | None:
            row = await c.fetchrow(
                "SELECT * FROM imports i WHERE id = ? AND tenant_id = ?" + IN_LIVE_DATASET.format(t="i"), import_id, tenant_id
            )
            return None if row is None else (await _with_errors(c, [_import(row)]))[0]

        return await self.read(op)

    async def get_import_any(self, import_id: str) -> ImportJob | None:
        return await self.one(_import, "SELECT * FROM imports WHERE id = ?", (import_id,))

    async def list_imports(self, tenant_id: str, dataset_id: str, after: int | None, limit: int) -> list[ImportJob]:
        clause, params = ("AND seq < ?", [after]) if after is not None else ("", [])

        async def op(c: PgConn) -> list[ImportJob]:
            rows = await c.fetch(
                f"SELECT * FROM imports WHERE tenant_id = ? AND dataset_id = ? {clause} ORDER BY seq DESC LIMIT ?",
                tenant_id, dataset_id, *params, limit,
            )
            return await _with_errors(c, [_import(r) for r in rows])

        return await self.read(op)

    async def import_arrived(self, import_id: str, size: int, now: datetime, next_dataset_status: Callable[[str], str]) -> ImportJob | None:
        """uninitialised → queued, taking the next place in the dataset's queue; None if it was not uninitialised."""

        async def op(c: PgConn) -> ImportJob | None:
            imp = _import(await _row(c, import_id))
            if imp.status != "uninitialised":
                return None
            last = await c.fetchval("SELECT max(arrival) FROM imports WHERE dataset_id = ?", imp.dataset_id)
            row = await c.fetchrow(
                "UPDATE imports SET status = 'queued', arrival = ?, size_bytes = ?, received_at = ? WHERE id = ? RETURNING *",
                (last or 0) + 1, size, now, import_id,
            )
            status = await c.fetchval("SELECT status FROM datasets WHERE id = ?", imp.dataset_id)
            target = next_dataset_status(status)
            if target != status:
                await c.execute("UPDATE datasets SET status = ?, updated_at = ? WHERE id = ?", target, now, imp.dataset_id)
            return _import(row)

        return await self.write(op)

    async def claim_next_import(self, dataset_id: str, now: datetime) -> ImportJob | None:
        """The import the dataset should be working on: the one processing (after a restart),
        else the earliest queued one, now marked processing; None when the queue is empty."""

        async def op(c: PgConn) -> ImportJob | None:
            row = await c.fetchrow("SELECT * FROM imports WHERE dataset_id = ? AND status = 'processing' LIMIT 1", dataset_id)
            if row is not None:
                return _import(row)
            row = await c.fetchrow(
                "SELECT id FROM imports WHERE dataset_id = ? AND status = 'queued' ORDER BY arrival LIMIT 1", dataset_id
            )
            if row is None:
                return None
            claimed = await c.fetchrow(
                "UPDATE imports SET status = 'processing', started_at = ? WHERE id = ? RETURNING *", now, row["id"]
            )
            return _import(claimed)

        return await self.write(op)

    async def datasets_with_pending_imports(self) -> list[str]:
        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch("SELECT DISTINCT dataset_id FROM imports WHERE status IN ('queued', 'processing')")

        return [r[0] for r in await self.read(op)]

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

        records = unpack_text(packed) if lines else ""  # stored as text: TOAST compresses it (lz4)

        async def op(c: PgConn) -> ImportJob:
            await c.execute("SET LOCAL synchronous_commit TO OFF")
            current = await _row(c, import_id)
            imp = _import(current)
            if imp.status != "processing" or offset <= imp.checkpoint_offset:
                return imp  # a stale or repeated batch changes nothing
            if lines:
                await c.execute(
                    "INSERT INTO datapoint_chunks (dataset_id, import_id, count, lines, records) VALUES (?, ?, ?, ?, ?)",
                    imp.dataset_id, import_id, len(lines), list(lines), records,
                )
            kept = errors[: max(ERRORS_KEPT - current["errors_kept"], 0)]
            if kept:
                await c.execute(
                    "INSERT INTO import_errors (import_id, line, field, message)"
                    " SELECT ?, * FROM unnest(?::bigint[], ?::text[], ?::text[])",
                    import_id, [e["line"] for e in kept], [pg_text(e["field"]) for e in kept], [pg_text(e["message"]) for e in kept],
                )
            updated = await c.fetchrow(
                "UPDATE imports SET accepted_count = accepted_count + ?, rejected_count = rejected_count + ?,"
                " parsed_count = parsed_count + ?, errors_kept = errors_kept + ?, checkpoint_offset = ?, checkpoint_line = ?"
                " WHERE id = ? RETURNING *",
                len(lines), rejected, parsed, len(kept), offset, line, import_id,
            )
            if lines:
                await c.execute(
                    "UPDATE datasets SET total_datapoint_count = total_datapoint_count + ?, last_ingest_at = ?, updated_at = ?,"
                    " status = CASE WHEN status IN ('draft', 'ingesting') THEN 'active' ELSE status END WHERE id = ?",
                    len(lines), now, now, imp.dataset_id,
                )
            return _import(updated)  # counters and checkpoint; errors are read with get_import

        return await self.write(op)

    async def finish_import(self, import_id: str, status: str, reason: str | None, now: datetime) -> ImportJob:
        async def op(c: PgConn) -> ImportJob:
            finished = await c.execute(
                "UPDATE imports SET status = ?, reason = ?, finished_at = ?, started_at = coalesce(started_at, ?)"
                " WHERE id = ? AND status = 'processing'",
                status, reason, now, now, import_id,
            )
            imp = _import(await _row(c, import_id))
            if finished:
                await emit(c, imp.tenant_id, "import.finished", ev.import_finished(imp), now)
            return imp

        return await self.write(op)

    async def list_datapoints(self, tenant_id: str, dataset_id: str, after: int | None, limit: int) -> list[Datapoint]:
        """Accepted records in import order, from just after position ``after``."""
        chunk_seq, skip = (after >> CHUNK_BITS, (after & ((1 << CHUNK_BITS) - 1)) + 1) if after is not None else (0, 0)

        async def op(c: PgConn) -> list[Datapoint]:
            out: list[Datapoint] = []
            cursor_seq, start = chunk_seq, skip
            while len(out) < limit:
                # A few chunks at a time, each cut on the server to the records still
                # wanted (from index lo): a small page does not ship whole chunks.
                rows = await c.fetch(
                    "SELECT d.seq, d.import_id, d.lo, d.lines[d.lo + 1 : d.lo + $5] AS lines,"
                    " (string_to_array(d.records, E'\\n'))[d.lo + 1 : d.lo + $5] AS records"
                    " FROM (SELECT d.seq, d.import_id, d.lines, d.records, CASE WHEN d.seq = $3 THEN $4 ELSE 0 END AS lo"
                    "       FROM datapoint_chunks d JOIN datasets s ON s.id = d.dataset_id"
                    "       WHERE d.dataset_id = $1 AND s.tenant_id = $2 AND d.seq >= $3 ORDER BY d.seq LIMIT 4) d"
                    " ORDER BY d.seq",
                    dataset_id, tenant_id, cursor_seq, start, limit - len(out),
                )
                for r in rows:
                    for i, (line, data) in enumerate(zip(r["lines"], r["records"], strict=True), start=r["lo"]):
                        out.append(Datapoint(dataset_id, r["import_id"], line, data, (r["seq"] << CHUNK_BITS) | i))
                        if len(out) == limit:
                            return out
                if len(rows) < 4:
                    break
                cursor_seq, start = rows[-1]["seq"] + 1, 0
            return out

        return await self.read(op)
