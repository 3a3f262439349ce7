"""Bulk operations on objects in SQLite (mixed into :class:`SqliteStore`): many rows, one transaction.

A batch of one dataset is written by one transaction on a worker thread (hundreds of rows
are not a "quick" write for the Trio thread), so a batch of 500 initiations costs one
commit and one group-committed fsync instead of 500. Counters change, and the webhook
events the single operations announce are written, in the same transaction as the objects
that cause them, as in :mod:`engine.store.sqlite.objects`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from engine.store import webhook_events as ev
from engine.store.records import IN_LIVE_DATASET, ObjectRecord, Upload, UploadPart
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.objects import _OBJECT_COLUMNS, _adjust_dataset, _object, _part, _upload, _value
from engine.store.sqlite.search import remove_index
from engine.store.sqlite.sqltime import ts
from engine.store.sqlite.webhooks import emit

_CHUNK = 500  # ids per IN (...) list: well under SQLite's variable limit


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


class BulkMixin(SqliteAccess):
    """Batch reads and writes of objects and uploads (``engine.bulk``)."""

    async def create_object_uploads(self, pairs: Sequence[tuple[ObjectRecord, Upload]]) -> None:
        """Insert every object and its upload session, all or nothing."""
        insert_object = f"INSERT INTO objects ({', '.join(_OBJECT_COLUMNS)}) VALUES ({', '.join('?' * len(_OBJECT_COLUMNS))})"
        insert_upload = (
            "INSERT INTO uploads (id, object_id, tenant_id, dataset_id, strategy, part_size_bytes, part_count, state,"
            " expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        objects = [[_value(getattr(obj, col)) for col in _OBJECT_COLUMNS] for obj, _ in pairs]
        uploads = [
            (u.id, u.object_id, u.tenant_id, u.dataset_id, u.strategy, u.part_size_bytes, u.part_count, u.state,
             ts(u.expires_at), ts(u.created_at))
            for _, u in pairs
        ]

        def op(c: sqlite3.Connection) -> None:
            c.executemany(insert_object, objects)
            c.executemany(insert_upload, uploads)

        await self.write(op)

    async def get_objects(self, tenant_id: str, object_ids: Sequence[str]) -> dict[str, ObjectRecord]:
        """The tenant's objects among ``object_ids`` (tombstones included), by id; others are absent."""

        def op(c: sqlite3.Connection) -> list[sqlite3.Row]:
            rows: list[sqlite3.Row] = []
            for chunk in _chunks(object_ids):
                rows += c.execute(
                    f"SELECT * FROM objects o WHERE tenant_id = ? AND id IN ({', '.join('?' * len(chunk))})"
                    + IN_LIVE_DATASET.format(t="o"),
                    (tenant_id, *chunk),
                ).fetchall()
            return rows

        return {r["id"]: _object(r) for r in await self.read(op)}

    async def upload_views(
        self, tenant_id: str, object_ids: Sequence[str]
    ) -> dict[str, tuple[ObjectRecord, Upload, list[UploadPart]]]:
        """For each of the tenant's objects among ``object_ids``: the object, its upload and
        the parts received, all in one snapshot (what a batch confirmation checks)."""

        def op(c: sqlite3.Connection) -> dict[str, tuple[ObjectRecord, Upload, list[UploadPart]]]:
            out: dict[str, tuple[ObjectRecord, Upload, list[UploadPart]]] = {}
            for chunk in _chunks(object_ids):
                marks = ", ".join("?" * len(chunk))
                objs = {r["upload_id"]: _object(r) for r in c.execute(
                    f"SELECT * FROM objects o WHERE tenant_id = ? AND id IN ({marks})" + IN_LIVE_DATASET.format(t="o"),
                    (tenant_id, *chunk),
                )}
                if not objs:
                    continue
                upload_marks = ", ".join("?" * len(objs))
                uploads = {r["id"]: _upload(r) for r in c.execute(f"SELECT * FROM uploads WHERE id IN ({upload_marks})", tuple(objs))}
                parts: dict[str, list[UploadPart]] = {}
                for r in c.execute(
                    f"SELECT * FROM upload_parts WHERE upload_id IN ({upload_marks}) ORDER BY upload_id, part_number", tuple(objs)
                ):
                    parts.setdefault(r["upload_id"], []).append(_part(r))
                for upload_id, obj in objs.items():
                    if upload_id in uploads:
                        out[obj.id] = (obj, uploads[upload_id], parts.get(upload_id, []))
            return out

        return await self.read(op)

    async def finish_uploads(
        self, object_ids: Sequence[tuple[str, str]], now: datetime, review_deadline: datetime,
        next_dataset_status: Callable[[str], str],
    ) -> list[tuple[ObjectRecord, bool]]:
        """:meth:`finish_upload` for ``(object_id, sha256)`` pairs of one dataset, in one
        transaction: each object marked uploaded once, the dataset counted once for all."""

        def op(c: sqlite3.Connection) -> list[tuple[ObjectRecord, bool]]:
            out: list[tuple[ObjectRecord, bool]] = []
            counted: dict[str, tuple[int, int]] = {}
            for object_id, checksum in object_ids:
                changed = c.execute(
                    "UPDATE objects SET status = 'uploaded', checksum_sha256 = ?, uploaded_at = ?, review_deadline = ?,"
                    " updated_at = ? WHERE id = ? AND status = 'pending_upload'",
                    (checksum, ts(now), ts(review_deadline), ts(now), object_id),
                ).rowcount
                obj = _object(c.execute("SELECT * FROM objects WHERE id = ?", (object_id,)).fetchone())
                if changed:
                    c.execute("UPDATE uploads SET state = 'completed', completed_at = ? WHERE id = ?", (ts(now), obj.upload_id))
                    n, size = counted.get(obj.dataset_id, (0, 0))
                    counted[obj.dataset_id] = (n + 1, size + obj.size_bytes)
                    emit(c, obj.tenant_id, "object.uploaded", ev.object_data(obj), now)
                out.append((obj, bool(changed)))
            for dataset_id, (n, size) in counted.items():
                _adjust_dataset(c, dataset_id, n, size, now)
                (status,) = c.execute("SELECT status FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
                target = next_dataset_status(status)
                if target != status:
                    c.execute("UPDATE datasets SET status = ? WHERE id = ?", (target, dataset_id))
            return out

        return await self.write(op)

    async def delete_objects(
        self, tenant_id: str, object_ids: Sequence[str], now: datetime
    ) -> list[tuple[ObjectRecord, ObjectRecord] | None]:
        """:meth:`delete_object` for many objects in one transaction: for each id ``(as it
        was, as it is now)`` (a tombstone stays as it was), or None when the tenant has no such object."""

        def op(c: sqlite3.Connection) -> list[tuple[ObjectRecord, ObjectRecord] | None]:
            out: list[tuple[ObjectRecord, ObjectRecord] | None] = []
            for object_id in object_ids:
                row = c.execute("SELECT * FROM objects WHERE id = ? AND tenant_id = ?", (object_id, tenant_id)).fetchone()
                if row is None:
                    out.append(None)
                    continue
                before = _object(row)
                if before.status != "deleted":
                    c.execute(
                        "UPDATE objects SET status = 'deleted', deleted_at = ?, updated_at = ?, plain_text = 0, ocr_blocks = 0,"
                        " chunk_embeddings = 0 WHERE id = ?",
                        (ts(now), ts(now), object_id),
                    )
                    c.execute("UPDATE uploads SET state = 'cancelled' WHERE id = ? AND state IN ('pending', 'abandoned')",
                              (before.upload_id,))
                    c.execute("DELETE FROM upload_parts WHERE upload_id = ?", (before.upload_id,))
                    remove_index(c, object_id, now)
                    if before.counted:
                        _adjust_dataset(c, before.dataset_id, -1, -before.size_bytes, now)
                    if before.status == "active":
                        c.execute("UPDATE datasets SET active_object_count = active_object_count - 1 WHERE id = ?",
                                  (before.dataset_id,))
                    emit(c, before.tenant_id, "object.status_changed", ev.status_changed(before, before.status, "deleted"), now)
                after = _object(c.execute("SELECT * FROM objects WHERE id = ?", (object_id,)).fetchone())
                out.append((before, after))
            return out

        return await self.write(op)
