"""Objects, upload sessions and parts in PostgreSQL (mixed into :class:`PgStore`).

An object counts towards its dataset (``object_count``, ``total_bytes``) from the moment
its upload is confirmed (``uploaded_at`` set) until it is deleted; every change to those
counters happens in the same transaction as the object change that causes it.

Several engine processes may write at once. Write transactions are SERIALIZABLE and
retried (:mod:`engine.store.postgres.access`), so a read-then-write below keeps the meaning it
has under SQLite's single writer: when a concurrent transaction changes what one read,
one of the two fails and runs again from the start. As in SQLite, state changes are also
conditional on the state they start from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from engine.store import webhook_events as ev
from engine.store.postgres.access import PgAccess, PgConn
from engine.store.postgres.search import remove_index
from engine.store.postgres.webhooks import emit
from engine.store.records import IN_LIVE_DATASET, ObjectRecord, Upload, UploadPart

_OBJECT_COLUMNS = (
    "id", "tenant_id", "dataset_id", "blob_id", "upload_id", "original_filename", "mime_type", "size_bytes",
    "declared_sha256", "checksum_sha256", "status", "review_state", "failure_reason", "latest_job_id",
    "plain_text", "ocr_blocks", "chunk_embeddings", "review_deadline", "created_at", "uploaded_at",
    "updated_at", "deleted_at",
)



def _object(r: asyncpg.Record) -> ObjectRecord:
    return ObjectRecord(
        id=r["id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], blob_id=r["blob_id"], upload_id=r["upload_id"],
        original_filename=r["original_filename"], mime_type=r["mime_type"], size_bytes=r["size_bytes"],
        declared_sha256=r["declared_sha256"], checksum_sha256=r["checksum_sha256"], status=r["status"],
        review_state=r["review_state"], created_at=r["created_at"], updated_at=r["updated_at"],
        failure_reason=r["failure_reason"], latest_job_id=r["latest_job_id"], plain_text=r["plain_text"],
        ocr_blocks=r["ocr_blocks"], chunk_embeddings=r["chunk_embeddings"],
        review_deadline=r["review_deadline"], uploaded_at=r["uploaded_at"], deleted_at=r["deleted_at"],
        review_reason=r["review_reason"], reviewed_at=r["reviewed_at"], reviewed_by=r["reviewed_by"],
        normalized_mime_type=r["normalized_mime_type"],
        keywords=tuple(orjson.loads(r["keywords"])) if r["keywords"] else (), seq=r["seq"],
    )


def _upload(r: asyncpg.Record) -> Upload:
    return Upload(
        id=r["id"], object_id=r["object_id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], strategy=r["strategy"],
        part_size_bytes=r["part_size_bytes"], part_count=r["part_count"], state=r["state"],
        expires_at=r["expires_at"], created_at=r["created_at"], completed_at=r["completed_at"],
    )


def _part(r: asyncpg.Record) -> UploadPart:
    return UploadPart(r["upload_id"], r["part_number"], r["file_name"], r["size_bytes"], r["sha256"], r["received_at"])


async def _get_object(c: PgConn, object_id: str) -> ObjectRecord:
    return _object(await c.fetchrow("SELECT * FROM objects WHERE id = ?", object_id))


async def _parts(c: PgConn, upload_id: str) -> list[UploadPart]:
    return [_part(r) for r in await c.fetch("SELECT * FROM upload_parts WHERE upload_id = ? ORDER BY part_number", upload_id)]


async def _adjust_dataset(c: PgConn, dataset_id: str, objects: int, size: int, now: datetime) -> None:
    await c.execute(
        "UPDATE datasets SET object_count = object_count + ?, total_bytes = total_bytes + ?, updated_at = ? WHERE id = ?",
        objects, size, now, dataset_id,
    )


class ObjectsMixin(PgAccess):
    """Object and upload persistence; relies on ``read``/``write`` of the store."""

    async def create_object_upload(self, obj: ObjectRecord, upload: Upload) -> None:
        async def op(c: PgConn) -> None:
            await c.execute(
                f"INSERT INTO objects ({', '.join(_OBJECT_COLUMNS)}) VALUES ({', '.join('?' * len(_OBJECT_COLUMNS))})",
                *(getattr(obj, col) for col in _OBJECT_COLUMNS),
            )
            await c.execute(
                "INSERT INTO uploads (id, object_id, tenant_id, dataset_id, strategy, part_size_bytes, part_count, state,"
                " expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                upload.id, upload.object_id, upload.tenant_id, upload.dataset_id, upload.strategy, upload.part_size_bytes,
                upload.part_count, upload.state, upload.expires_at, upload.created_at,
            )

        await self.write(op)

    async def get_object(self, tenant_id: str, object_id: str) -> ObjectRecord | None:
        return await self.one(
            _object, "SELECT * FROM objects o WHERE id = ? AND tenant_id = ?" + IN_LIVE_DATASET.format(t="o"), (object_id, tenant_id)
        )

    async def get_object_by_blob(self, blob_id: str) -> ObjectRecord | None:
        return await self.one(_object, "SELECT * FROM objects WHERE blob_id = ?", (blob_id,))

    async def get_upload(self, upload_id: str) -> Upload | None:
        return await self.one(_upload, "SELECT * FROM uploads WHERE id = ?", (upload_id,))

    async def list_parts(self, upload_id: str) -> list[UploadPart]:
        return await self.read(_parts, upload_id)

    async def upload_view(self, tenant_id: str, object_id: str) -> tuple[ObjectRecord, Upload, list[UploadPart]] | None:
        """The object, its upload and the parts received, in one snapshot (what a confirmation checks); none for an object of a deleted dataset, as
        :meth:`get_object`."""

        async def op(c: PgConn) -> tuple[ObjectRecord, Upload, list[UploadPart]] | None:
            obj = await c.fetchrow(
                "SELECT * FROM objects o WHERE id = ? AND tenant_id = ?" + IN_LIVE_DATASET.format(t="o"), object_id, tenant_id
            )
            upload = None if obj is None else await c.fetchrow("SELECT * FROM uploads WHERE id = ?", obj["upload_id"])
            if obj is None or upload is None:
                return None
            return _object(obj), _upload(upload), await _parts(c, upload["id"])

        return await self.read(op)

    async def record_part(self, part: UploadPart) -> tuple[bool, str | None]:
        """Record a received part if its upload is still pending.

        Returns ``(accepted, replaced_file)``: the file of an earlier PUT of the same part,
        now unreferenced, for the caller to delete."""

        async def op(c: PgConn) -> tuple[bool, str | None]:
            state = await c.fetchval("SELECT state FROM uploads WHERE id = ?", part.upload_id)
            if state != "pending":
                return False, None
            old = await c.fetchval(
                "SELECT file_name FROM upload_parts WHERE upload_id = ? AND part_number = ?",
                part.upload_id, part.part_number,
            )
            await c.execute(
                "INSERT INTO upload_parts (upload_id, part_number, file_name, size_bytes, sha256, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (upload_id, part_number) DO UPDATE SET file_name = excluded.file_name,"
                " size_bytes = excluded.size_bytes, sha256 = excluded.sha256, received_at = excluded.received_at",
                part.upload_id, part.part_number, part.file_name, part.size_bytes, part.sha256, part.received_at,
            )
            return True, old

        return await self.write(op)

    async def finish_upload(
        self, object_id: str, checksum: str, now: datetime, review_deadline: datetime, next_dataset_status: Callable[[str], str]
    ) -> tuple[ObjectRecord, bool]:
        """Mark the object uploaded (once), complete its upload and count it in its dataset.

        ``next_dataset_status(current)`` says where the dataset's lifecycle goes on a new
        object. Returns the object and whether this call was the one that finished it."""

        async def op(c: PgConn) -> tuple[ObjectRecord, bool]:
            row = await c.fetchrow(
                "UPDATE objects SET status = 'uploaded', checksum_sha256 = ?, uploaded_at = ?, review_deadline = ?, updated_at = ?"
                " WHERE id = ? AND status = 'pending_upload' RETURNING *",
                checksum, now, review_deadline, now, object_id,
            )
            if row is None:
                return await _get_object(c, object_id), False
            obj = _object(row)
            await c.execute("UPDATE uploads SET state = 'completed', completed_at = ? WHERE id = ?", now, obj.upload_id)
            await _adjust_dataset(c, obj.dataset_id, 1, obj.size_bytes, now)
            status = await c.fetchval("SELECT status FROM datasets WHERE id = ?", obj.dataset_id)
            target = next_dataset_status(status)
            if target != status:
                await c.execute("UPDATE datasets SET status = ? WHERE id = ?", target, obj.dataset_id)
            await emit(c, obj.tenant_id, "object.uploaded", ev.object_data(obj), now)
            return obj, True

        return await self.write(op)

    async def renew_upload(self, upload_id: str, expires_at: datetime, now: datetime) -> Upload | None:
        """Give a not yet completed upload a new expiry (reviving an abandoned one)."""

        async def op(c: PgConn) -> asyncpg.Record | None:
            row = await c.fetchrow(
                "UPDATE uploads SET state = 'pending', expires_at = ? WHERE id = ? AND state IN ('pending', 'abandoned') RETURNING *",
                expires_at, upload_id,
            )
            if row is None:
                return await c.fetchrow("SELECT * FROM uploads WHERE id = ?", upload_id)
            await c.execute(
                "UPDATE objects SET status = 'pending_upload', failure_reason = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'failed' AND failure_reason = 'upload_abandoned'",
                now, row["object_id"],
            )
            return row

        row = await self.write(op)
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

        async def op(c: PgConn) -> tuple[ObjectRecord, list[UploadPart]] | None:
            row = await c.fetchrow("SELECT * FROM objects WHERE id = ? AND tenant_id = ?", object_id, tenant_id)
            if row is None:
                return None
            before = _object(row)
            parts = await _parts(c, before.upload_id)
            if before.status == "deleted":
                return before, parts
            await c.execute(
                "UPDATE objects SET status = 'deleted', deleted_at = ?, updated_at = ?, plain_text = false, ocr_blocks = false,"
                " chunk_embeddings = false WHERE id = ?",
                now, now, object_id,
            )
            await c.execute(
                "UPDATE uploads SET state = 'cancelled' WHERE id = ? AND state IN ('pending', 'abandoned')", before.upload_id
            )
            await c.execute("DELETE FROM upload_parts WHERE upload_id = ?", before.upload_id)
            await remove_index(c, object_id)
            if before.counted:
                await _adjust_dataset(c, before.dataset_id, -1, -before.size_bytes, now)
            if before.status == "active":
                await c.execute(
                    "UPDATE datasets SET active_object_count = active_object_count - 1 WHERE id = ?", before.dataset_id
                )
            await emit(c, before.tenant_id, "object.status_changed", ev.status_changed(before, before.status, "deleted"), now)
            return before, parts

        return await self.write(op)

    async def delete_dataset_objects(self, tenant_id: str, dataset_id: str, now: datetime) -> list[tuple[ObjectRecord, list[UploadPart]]]:
        """Tombstone every live object of a dataset (its deletion); return them and their parts."""

        async def op(c: PgConn) -> list[str]:
            rows = await c.fetch(
                "SELECT id FROM objects WHERE tenant_id = ? AND dataset_id = ? AND status != 'deleted'", tenant_id, dataset_id
            )
            return [r["id"] for r in rows]

        gone = []
        for object_id in await self.read(op):
            result = await self.delete_object(tenant_id, object_id, now)
            if result is not None:
                gone.append(result)
        return gone

    async def datasets_with_expired_uploads(self, before: datetime) -> list[str]:
        async def op(c: PgConn) -> list[str]:
            rows = await c.fetch(
                "SELECT DISTINCT dataset_id FROM uploads WHERE state = 'pending' AND expires_at < ? LIMIT 1000", before
            )
            return [r["dataset_id"] for r in rows]

        return await self.read(op)

    async def abandon_expired_uploads(self, dataset_id: str, before: datetime, now: datetime) -> list[tuple[Upload, list[UploadPart]]]:
        """Mark the dataset's uploads whose URLs expired before ``before`` abandoned (their objects failed).

        Returns each upload as it was (still pending) with the parts it had. Three set-wide
        statements rather than four per upload: a sweep may hold many uploads."""

        async def op(c: PgConn) -> list[tuple[Upload, list[UploadPart]]]:
            rows = await c.fetch(
                "WITH expired AS (SELECT * FROM uploads WHERE dataset_id = ? AND state = 'pending' AND expires_at < ?)"
                " UPDATE uploads SET state = 'abandoned' FROM expired WHERE uploads.id = expired.id RETURNING expired.*",
                dataset_id, before,
            )
            uploads = sorted((_upload(r) for r in rows), key=lambda u: (u.expires_at, u.id))
            ids = [u.id for u in uploads]
            parts: dict[str, list[UploadPart]] = {upload_id: [] for upload_id in ids}
            for r in await c.fetch("DELETE FROM upload_parts WHERE upload_id = ANY(?::text[]) RETURNING *", ids):
                parts[r["upload_id"]].append(_part(r))
            await c.execute(
                "UPDATE objects SET status = 'failed', failure_reason = 'upload_abandoned', updated_at = ?"
                " WHERE id = ANY(?::text[]) AND status = 'pending_upload'",
                now, [u.object_id for u in uploads],
            )
            return [(u, sorted(parts[u.id], key=lambda p: p.part_number)) for u in uploads]

        return await self.write(op)
