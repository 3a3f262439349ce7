"""Objects, upload sessions and parts in SQLite (mixed into :class:`SqliteStore`).

An object counts towards its dataset (``object_count``, ``total_bytes``) from the moment
its upload is confirmed (``uploaded_at`` set) until it is deleted; every change to those
counters happens in the same transaction as the object change that causes it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import orjson

from engine.store import webhook_events as ev
from engine.store.records import IN_LIVE_DATASET, ObjectRecord, Upload, UploadPart
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.search import remove_index
from engine.store.sqlite.sqltime import dt, ts
from engine.store.sqlite.webhooks import emit

T = TypeVar("T")

QUICK_PARTS = 64  # list_parts reads up to this many parts on the Trio thread

_OBJECT_COLUMNS = (
    "id", "tenant_id", "dataset_id", "blob_id", "upload_id", "original_filename", "mime_type", "size_bytes",
    "declared_sha256", "checksum_sha256", "status", "review_state", "failure_reason", "latest_job_id",
    "plain_text", "ocr_blocks", "chunk_embeddings", "review_deadline", "created_at", "uploaded_at",
    "updated_at", "deleted_at",
)



def _object(r: sqlite3.Row) -> ObjectRecord:
    return ObjectRecord(
        id=r["id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], blob_id=r["blob_id"], upload_id=r["upload_id"],
        original_filename=r["original_filename"], mime_type=r["mime_type"], size_bytes=r["size_bytes"],
        declared_sha256=r["declared_sha256"], checksum_sha256=r["checksum_sha256"], status=r["status"],
        review_state=r["review_state"], created_at=dt(r["created_at"]), updated_at=dt(r["updated_at"]),  # type: ignore[arg-type]
        failure_reason=r["failure_reason"], latest_job_id=r["latest_job_id"], plain_text=bool(r["plain_text"]),
        ocr_blocks=bool(r["ocr_blocks"]), chunk_embeddings=bool(r["chunk_embeddings"]),
        review_deadline=dt(r["review_deadline"]), uploaded_at=dt(r["uploaded_at"]), deleted_at=dt(r["deleted_at"]),
        review_reason=r["review_reason"], reviewed_at=dt(r["reviewed_at"]), reviewed_by=r["reviewed_by"],
        normalized_mime_type=r["normalized_mime_type"],
        keywords=tuple(orjson.loads(r["keywords"])) if r["keywords"] else (), seq=r["seq"],
    )


def _upload(r: sqlite3.Row) -> Upload:
    return Upload(
        id=r["id"], object_id=r["object_id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], strategy=r["strategy"],
        part_size_bytes=r["part_size_bytes"], part_count=r["part_count"], state=r["state"],
        expires_at=dt(r["expires_at"]), created_at=dt(r["created_at"]), completed_at=dt(r["completed_at"]),  # type: ignore[arg-type]
    )


def _part(r: sqlite3.Row) -> UploadPart:
    return UploadPart(r["upload_id"], r["part_number"], r["file_name"], r["size_bytes"], r["sha256"], dt(r["received_at"]))  # type: ignore[arg-type]


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return ts(v)
    if isinstance(v, bool):
        return int(v)
    return v


def _get_object(c: sqlite3.Connection, object_id: str) -> ObjectRecord:
    return _object(c.execute("SELECT * FROM objects WHERE id = ?", (object_id,)).fetchone())


def _adjust_dataset(c: sqlite3.Connection, dataset_id: str, objects: int, size: int, now: datetime) -> None:
    c.execute(
        "UPDATE datasets SET object_count = object_count + ?, total_bytes = total_bytes + ?, updated_at = ? WHERE id = ?",
        (objects, size, ts(now), dataset_id),
    )


class ObjectsMixin(SqliteAccess):
    """Object and upload persistence; relies on ``read``/``write`` of the store."""

    async def create_object_upload(self, obj: ObjectRecord, upload: Upload) -> None:
        def op(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT INTO objects ({', '.join(_OBJECT_COLUMNS)}) VALUES ({', '.join('?' * len(_OBJECT_COLUMNS))})",
                [_value(getattr(obj, col)) for col in _OBJECT_COLUMNS],
            )
            c.execute(
                "INSERT INTO uploads (id, object_id, tenant_id, dataset_id, strategy, part_size_bytes, part_count, state,"
                " expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (upload.id, upload.object_id, upload.tenant_id, upload.dataset_id, upload.strategy, upload.part_size_bytes,
                 upload.part_count, upload.state, ts(upload.expires_at), ts(upload.created_at)),
            )

        await self.write(op, quick=True)

    async def get_object(self, tenant_id: str, object_id: str) -> ObjectRecord | None:
        return await self.one(
            _object, "SELECT * FROM objects o WHERE id = ? AND tenant_id = ?" + IN_LIVE_DATASET.format(t="o"), (object_id, tenant_id)
        )

    async def get_object_by_blob(self, blob_id: str) -> ObjectRecord | None:
        return await self.one(_object, "SELECT * FROM objects WHERE blob_id = ?", (blob_id,))

    async def get_upload(self, upload_id: str) -> Upload | None:
        return await self.one(_upload, "SELECT * FROM uploads WHERE id = ?", (upload_id,))

    async def list_parts(self, upload_id: str) -> list[UploadPart]:
        """A few parts (nearly every upload) are a quick read; thousands are read on a thread."""
        sql = "SELECT * FROM upload_parts WHERE upload_id = ? ORDER BY part_number"
        rows = await self.read(lambda c: c.execute(sql + " LIMIT ?", (upload_id, QUICK_PARTS + 1)).fetchall(), quick=True)
        if len(rows) > QUICK_PARTS:
            rows = await self.read(lambda c: c.execute(sql, (upload_id,)).fetchall())
        return [_part(r) for r in rows]

    async def upload_view(self, tenant_id: str, object_id: str) -> tuple[ObjectRecord, Upload, list[UploadPart]] | None:
        """The object, its upload and the parts received, in one snapshot (what a confirmation checks); none for an object of a deleted dataset, as
        :meth:`get_object`."""

        def op(c: sqlite3.Connection) -> tuple[sqlite3.Row, sqlite3.Row, list[sqlite3.Row]] | None:
            obj = c.execute(
                "SELECT * FROM objects o WHERE id = ? AND tenant_id = ?" + IN_LIVE_DATASET.format(t="o"), (object_id, tenant_id)
            ).fetchone()
            upload = None if obj is None else c.execute("SELECT * FROM uploads WHERE id = ?", (obj["upload_id"],)).fetchone()
            if upload is None:
                return None
            parts = c.execute("SELECT * FROM upload_parts WHERE upload_id = ? ORDER BY part_number LIMIT ?",
                              (upload["id"], QUICK_PARTS + 1)).fetchall()
            return obj, upload, parts

        found = await self.read(op, quick=True)
        if found is None:
            return None
        obj, upload, rows = found
        parts = await self.list_parts(upload["id"]) if len(rows) > QUICK_PARTS else [_part(r) for r in rows]
        return _object(obj), _upload(upload), parts

    async def record_part(self, part: UploadPart) -> tuple[bool, str | None]:
        """Record a received part if its upload is still pending.

        Returns ``(accepted, replaced_file)``: the file of an earlier PUT of the same part,
        now unreferenced, for the caller to delete."""

        def op(c: sqlite3.Connection) -> tuple[bool, str | None]:
            state = c.execute("SELECT state FROM uploads WHERE id = ?", (part.upload_id,)).fetchone()
            if state is None or state[0] != "pending":
                return False, None
            old = c.execute(
                "SELECT file_name FROM upload_parts WHERE upload_id = ? AND part_number = ?", (part.upload_id, part.part_number)
            ).fetchone()
            c.execute(
                "INSERT OR REPLACE INTO upload_parts (upload_id, part_number, file_name, size_bytes, sha256, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (part.upload_id, part.part_number, part.file_name, part.size_bytes, part.sha256, ts(part.received_at)),
            )
            return True, None if old is None else old[0]

        return await self.write(op, quick=True)

    async def finish_upload(
        self, object_id: str, checksum: str, now: datetime, review_deadline: datetime, next_dataset_status: Callable[[str], str]
    ) -> tuple[ObjectRecord, bool]:
        """Mark the object uploaded (once), complete its upload and count it in its dataset.

        ``next_dataset_status(current)`` says where the dataset's lifecycle goes on a new
        object. Returns the object and whether this call was the one that finished it."""

        def op(c: sqlite3.Connection) -> tuple[ObjectRecord, bool]:
            changed = c.execute(
                "UPDATE objects SET status = 'uploaded', checksum_sha256 = ?, uploaded_at = ?, review_deadline = ?, updated_at = ?"
                " WHERE id = ? AND status = 'pending_upload'",
                (checksum, ts(now), ts(review_deadline), ts(now), object_id),
            ).rowcount
            obj = _get_object(c, object_id)
            if changed:
                c.execute("UPDATE uploads SET state = 'completed', completed_at = ? WHERE id = ?", (ts(now), obj.upload_id))
                _adjust_dataset(c, obj.dataset_id, 1, obj.size_bytes, now)
                (status,) = c.execute("SELECT status FROM datasets WHERE id = ?", (obj.dataset_id,)).fetchone()
                target = next_dataset_status(status)
                if target != status:
                    c.execute("UPDATE datasets SET status = ? WHERE id = ?", (target, obj.dataset_id))
                emit(c, obj.tenant_id, "object.uploaded", ev.object_data(obj), now)
            return obj, bool(changed)

        return await self.write(op, quick=True)

    async def renew_upload(self, upload_id: str, expires_at: datetime, now: datetime) -> Upload | None:
        """Give a not yet completed upload a new expiry (reviving an abandoned one)."""

        def op(c: sqlite3.Connection) -> sqlite3.Row | None:
            row = c.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
            if row is None or row["state"] not in ("pending", "abandoned"):
                return row
            c.execute("UPDATE uploads SET state = 'pending', expires_at = ? WHERE id = ?", (ts(expires_at), upload_id))
            c.execute(
                "UPDATE objects SET status = 'pending_upload', failure_reason = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'failed' AND failure_reason = 'upload_abandoned'",
                (ts(now), row["object_id"]),
            )
            return c.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()

        row = await self.write(op, quick=True)
        return None if row is None else _upload(row)

    async def list_objects(
        self, tenant_id: str, dataset_id: str, *, status: str | None, review_state: str | None, after: int | None, limit: int,
        checksum_sha256: str | None = None,
    ) -> list[ObjectRecord]:
        where = ["tenant_id = ?", "dataset_id = ?"]
        params: list[Any] = [tenant_id, dataset_id]
        if status is None:
            where.append("status != 'deleted'")
        else:
            where.append("status = ?")
            params.append(status)
        if review_state is not None:
            where.append("review_state = ?")
            params.append(review_state)
        if checksum_sha256 is not None:
            where.append("checksum_sha256 = ?")
            params.append(checksum_sha256)
        return await self.newest_page(_object, "objects", where, params, after, limit)

    async def delete_object(self, tenant_id: str, object_id: str, now: datetime) -> tuple[ObjectRecord, list[UploadPart]] | None:
        """Tombstone the object, uncount it, cancel its upload; return it as it was and its parts."""

        def op(c: sqlite3.Connection) -> tuple[ObjectRecord, list[UploadPart]] | None:
            row = c.execute("SELECT * FROM objects WHERE id = ? AND tenant_id = ?", (object_id, tenant_id)).fetchone()
            if row is None:
                return None
            before = _object(row)
            parts = [_part(r) for r in c.execute("SELECT * FROM upload_parts WHERE upload_id = ?", (before.upload_id,))]
            if before.status == "deleted":
                return before, parts
            c.execute(
                "UPDATE objects SET status = 'deleted', deleted_at = ?, updated_at = ?, plain_text = 0, ocr_blocks = 0,"
                " chunk_embeddings = 0 WHERE id = ?",
                (ts(now), ts(now), object_id),
            )
            c.execute("UPDATE uploads SET state = 'cancelled' WHERE id = ? AND state IN ('pending', 'abandoned')", (before.upload_id,))
            c.execute("DELETE FROM upload_parts WHERE upload_id = ?", (before.upload_id,))
            remove_index(c, object_id, now)
            if before.counted:
                _adjust_dataset(c, before.dataset_id, -1, -before.size_bytes, now)
            if before.status == "active":
                c.execute("UPDATE datasets SET active_object_count = active_object_count - 1 WHERE id = ?", (before.dataset_id,))
            emit(c, before.tenant_id, "object.status_changed", ev.status_changed(before, before.status, "deleted"), now)
            return before, parts

        return await self.write(op, quick=True)

    async def delete_dataset_objects(self, tenant_id: str, dataset_id: str, now: datetime) -> list[tuple[ObjectRecord, list[UploadPart]]]:
        """Tombstone every live object of a dataset (its deletion); return them and their parts."""
        rows = await self.read(
            lambda c: c.execute(
                "SELECT id FROM objects WHERE tenant_id = ? AND dataset_id = ? AND status != 'deleted'", (tenant_id, dataset_id)
            ).fetchall()
        )
        gone = []
        for (object_id,) in rows:
            result = await self.delete_object(tenant_id, object_id, now)
            if result is not None:
                gone.append(result)
        return gone

    async def datasets_with_expired_uploads(self, before: datetime) -> list[str]:
        rows = await self.read(
            lambda c: c.execute(
                "SELECT DISTINCT dataset_id FROM uploads WHERE state = 'pending' AND expires_at < ? LIMIT 1000", (ts(before),)
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def abandon_expired_uploads(self, dataset_id: str, before: datetime, now: datetime) -> list[tuple[Upload, list[UploadPart]]]:
        """Mark the dataset's uploads whose URLs expired before ``before`` abandoned (their objects failed)."""

        def op(c: sqlite3.Connection) -> list[tuple[Upload, list[UploadPart]]]:
            rows = c.execute(
                "SELECT * FROM uploads WHERE dataset_id = ? AND state = 'pending' AND expires_at < ?", (dataset_id, ts(before))
            ).fetchall()
            out = []
            for row in rows:
                upload = _upload(row)
                parts = [_part(r) for r in c.execute("SELECT * FROM upload_parts WHERE upload_id = ?", (upload.id,))]
                c.execute("UPDATE uploads SET state = 'abandoned' WHERE id = ?", (upload.id,))
                c.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload.id,))
                c.execute(
                    "UPDATE objects SET status = 'failed', failure_reason = 'upload_abandoned', updated_at = ?"
                    " WHERE id = ? AND status = 'pending_upload'",
                    (ts(now), upload.object_id),
                )
                out.append((upload, parts))
            return out

        return await self.write(op)
