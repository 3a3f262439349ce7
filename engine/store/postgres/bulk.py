"""Bulk operations on objects in PostgreSQL (mixed into :class:`PgStore`): many rows, one transaction.

Set-wide statements (``= ANY($1::text[])``, ``unnest``) instead of a statement per row:
a batch of 500 is a handful of round trips on the asyncio side and one commit. Serializable
and retried like every write (:mod:`engine.store.postgres.access`); counters change, and the
webhook events the single operations announce are written (:func:`emit_many`, one statement),
in the same transaction as the objects that cause them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from engine.store import webhook_events as ev
from engine.store.postgres.access import PgAccess, PgConn
from engine.store.postgres.objects import _OBJECT_COLUMNS, _adjust_dataset, _object, _part, _upload
from engine.store.postgres.search import remove_index
from engine.store.postgres.webhooks import emit_many
from engine.store.records import IN_LIVE_DATASET, ObjectRecord, Upload, UploadPart


async def _emit_by_tenant(c: PgConn, objs: Sequence[ObjectRecord], event: Callable[[ObjectRecord], tuple[str, dict[str, Any]]],
                          now: datetime) -> None:
    """The event each object's change announces (as the single operation does), in ``c``'s transaction."""
    by_tenant: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for obj in objs:
        by_tenant.setdefault(obj.tenant_id, []).append(event(obj))
    for tenant_id, events in by_tenant.items():
        await emit_many(c, tenant_id, events, now)


class BulkMixin(PgAccess):
    """Batch reads and writes of objects and uploads (``engine.bulk``)."""

    async def create_object_uploads(self, pairs: Sequence[tuple[ObjectRecord, Upload]]) -> None:
        """Insert every object and its upload session, all or nothing."""
        insert_object = f"INSERT INTO objects ({', '.join(_OBJECT_COLUMNS)}) VALUES ({', '.join('?' * len(_OBJECT_COLUMNS))})"
        insert_upload = (
            "INSERT INTO uploads (id, object_id, tenant_id, dataset_id, strategy, part_size_bytes, part_count, state,"
            " expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        objects = [[getattr(obj, col) for col in _OBJECT_COLUMNS] for obj, _ in pairs]
        uploads = [
            (u.id, u.object_id, u.tenant_id, u.dataset_id, u.strategy, u.part_size_bytes, u.part_count, u.state,
             u.expires_at, u.created_at)
            for _, u in pairs
        ]

        async def op(c: PgConn) -> None:
            await c.executemany(insert_object, objects)
            await c.executemany(insert_upload, uploads)

        await self.write(op)

    async def get_objects(self, tenant_id: str, object_ids: Sequence[str]) -> dict[str, ObjectRecord]:
        """The tenant's objects among ``object_ids`` (tombstones included), by id; others are absent."""

        async def op(c: PgConn) -> list[asyncpg.Record]:
            return await c.fetch(
                "SELECT * FROM objects o WHERE tenant_id = ? AND id = ANY(?::text[])" + IN_LIVE_DATASET.format(t="o"),
                tenant_id, list(object_ids),
            )

        return {r["id"]: _object(r) for r in await self.read(op)}

    async def upload_views(
        self, tenant_id: str, object_ids: Sequence[str]
    ) -> dict[str, tuple[ObjectRecord, Upload, list[UploadPart]]]:
        """For each of the tenant's objects among ``object_ids``: the object, its upload and
        the parts received, all in one snapshot (what a batch confirmation checks)."""

        async def op(c: PgConn) -> dict[str, tuple[ObjectRecord, Upload, list[UploadPart]]]:
            objs = {r["upload_id"]: _object(r) for r in await c.fetch(
                "SELECT * FROM objects o WHERE tenant_id = ? AND id = ANY(?::text[])" + IN_LIVE_DATASET.format(t="o"),
                tenant_id, list(object_ids),
            )}
            if not objs:
                return {}
            upload_ids = list(objs)
            uploads = {r["id"]: _upload(r) for r in await c.fetch("SELECT * FROM uploads WHERE id = ANY(?::text[])", upload_ids)}
            parts: dict[str, list[UploadPart]] = {}
            for r in await c.fetch(
                "SELECT * FROM upload_parts WHERE upload_id = ANY(?::text[]) ORDER BY upload_id, part_number", upload_ids
            ):
                parts.setdefault(r["upload_id"], []).append(_part(r))
            return {obj.id: (obj, uploads[upload_id], parts.get(upload_id, []))
                    for upload_id, obj in objs.items() if upload_id in uploads}

        return await self.read(op)

    async def finish_uploads(
        self, object_ids: Sequence[tuple[str, str]], now: datetime, review_deadline: datetime,
        next_dataset_status: Callable[[str], str],
    ) -> list[tuple[ObjectRecord, bool]]:
        """:meth:`finish_upload` for ``(object_id, sha256)`` pairs, in one transaction: each
        object marked uploaded once, each dataset counted once for all of its objects."""
        ids = [oid for oid, _ in object_ids]
        sums = [sha for _, sha in object_ids]

        async def op(c: PgConn) -> list[tuple[ObjectRecord, bool]]:
            changed = {r["id"]: _object(r) for r in await c.fetch(
                "UPDATE objects o SET status = 'uploaded', checksum_sha256 = v.sha, uploaded_at = ?, review_deadline = ?,"
                " updated_at = ? FROM unnest(?::text[], ?::text[]) AS v(id, sha)"
                " WHERE o.id = v.id AND o.status = 'pending_upload' RETURNING o.*",
                now, review_deadline, now, ids, sums,
            )}
            if changed:
                await c.execute(
                    "UPDATE uploads SET state = 'completed', completed_at = ? WHERE id = ANY(?::text[])",
                    now, [o.upload_id for o in changed.values()],
                )
            counted: dict[str, tuple[int, int]] = {}
            for obj in changed.values():
                n, size = counted.get(obj.dataset_id, (0, 0))
                counted[obj.dataset_id] = (n + 1, size + obj.size_bytes)
            for dataset_id, (n, size) in sorted(counted.items()):
                await _adjust_dataset(c, dataset_id, n, size, now)
                status = await c.fetchval("SELECT status FROM datasets WHERE id = ?", dataset_id)
                target = next_dataset_status(status)
                if target != status:
                    await c.execute("UPDATE datasets SET status = ? WHERE id = ?", target, dataset_id)
            await _emit_by_tenant(c, [changed[oid] for oid in ids if oid in changed],
                                  lambda o: ("object.uploaded", ev.object_data(o)), now)
            unchanged = [oid for oid in ids if oid not in changed]
            others = {r["id"]: _object(r) for r in await c.fetch("SELECT * FROM objects WHERE id = ANY(?::text[])", unchanged)} \
                if unchanged else {}
            return [(changed[oid], True) if oid in changed else (others[oid], False) for oid in ids]

        return await self.write(op)

    async def delete_objects(
        self, tenant_id: str, object_ids: Sequence[str], now: datetime
    ) -> list[tuple[ObjectRecord, ObjectRecord] | None]:
        """:meth:`delete_object` for many objects in one transaction: for each id ``(as it
        was, as it is now)`` (a tombstone stays as it was), or None when the tenant has no such object."""

        async def op(c: PgConn) -> list[tuple[ObjectRecord, ObjectRecord] | None]:
            before = {r["id"]: _object(r) for r in await c.fetch(
                "SELECT * FROM objects WHERE tenant_id = ? AND id = ANY(?::text[]) FOR UPDATE", tenant_id, list(object_ids)
            )}
            live = [o for o in before.values() if o.status != "deleted"]
            after: dict[str, ObjectRecord] = {o.id: o for o in before.values()}
            if live:
                ids = [o.id for o in live]
                for r in await c.fetch(
                    "UPDATE objects SET status = 'deleted', deleted_at = ?, updated_at = ?, plain_text = false,"
                    " ocr_blocks = false, chunk_embeddings = false WHERE id = ANY(?::text[]) RETURNING *",
                    now, now, ids,
                ):
                    after[r["id"]] = _object(r)
                upload_ids = [o.upload_id for o in live]
                await c.execute(
                    "UPDATE uploads SET state = 'cancelled' WHERE id = ANY(?::text[]) AND state IN ('pending', 'abandoned')",
                    upload_ids,
                )
                await c.execute("DELETE FROM upload_parts WHERE upload_id = ANY(?::text[])", upload_ids)
                for o in live:
                    await remove_index(c, o.id)
                uncount: dict[str, tuple[int, int, int]] = {}
                for o in live:
                    n, size, active = uncount.get(o.dataset_id, (0, 0, 0))
                    uncount[o.dataset_id] = (n + int(o.counted), size + (o.size_bytes if o.counted else 0),
                                             active + int(o.status == "active"))
                for dataset_id, (n, size, active) in sorted(uncount.items()):
                    if n:
                        await _adjust_dataset(c, dataset_id, -n, -size, now)
                    if active:
                        await c.execute("UPDATE datasets SET active_object_count = active_object_count - ? WHERE id = ?",
                                        active, dataset_id)
                await _emit_by_tenant(c, [before[oid] for oid in object_ids if oid in before and before[oid].status != "deleted"],
                                      lambda o: ("object.status_changed", ev.status_changed(o, o.status, "deleted")), now)
            return [(before[oid], after[oid]) if oid in before else None for oid in object_ids]

        return await self.write(op)
