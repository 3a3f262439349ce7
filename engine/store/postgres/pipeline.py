"""Review decisions and pipeline jobs in PostgreSQL (mixed into PgStore; the search index
is :mod:`engine.store.postgres.search`).

Every method is one transaction, and every state change is conditional on the state it
starts from (``WHERE review_state IN (...)``), so a decision taken twice, or a stage
reported twice after a crash, changes nothing the second time. Counters move in the same
transaction as the change that causes them. Two engine processes deciding on the same
object at once are serialised by the SERIALIZABLE write transactions: the loser is
retried from the start and then sees the winner's state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg
import orjson

from engine.store import webhook_events as ev
from engine.store.postgres.access import PgAccess, PgConn, pg_text
from engine.store.postgres.objects import _adjust_dataset, _get_object, _object
from engine.store.postgres.search import remove_index
from engine.store.postgres.webhooks import emit
from engine.store.records import IN_LIVE_DATASET, Artifacts, Job, ObjectRecord

_JOB_COLUMNS = ("id", "tenant_id", "dataset_id", "type", "object_id", "import_id", "status", "stage", "attempts", "error",
                "created_at", "started_at", "finished_at")



def _job(r: asyncpg.Record) -> Job:
    return Job(
        id=r["id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], type=r["type"], status=r["status"],
        created_at=r["created_at"], object_id=r["object_id"], import_id=r["import_id"], stage=r["stage"],
        attempts=r["attempts"], error=r["error"], started_at=r["started_at"], finished_at=r["finished_at"], seq=r["seq"],
    )


async def insert_job(c: PgConn, job: Job) -> None:
    await c.execute(
        f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
        *(getattr(job, col) for col in _JOB_COLUMNS),
    )


async def _get_job(c: PgConn, job_id: str) -> Job:
    return _job(await c.fetchrow("SELECT * FROM jobs WHERE id = ?", job_id))


async def _uncount(c: PgConn, obj: ObjectRecord, now: datetime) -> None:
    if obj.counted:
        await _adjust_dataset(c, obj.dataset_id, -1, -obj.size_bytes, now)


class PipelineMixin(PgAccess):
    """Review, jobs and index persistence; relies on ``read``/``write`` of the store."""

    # -- review -------------------------------------------------------------------------
    async def get_object_any(self, object_id: str) -> ObjectRecord | None:
        """An object of any tenant (platform admins only)."""
        return await self.one(_object, "SELECT * FROM objects WHERE id = ?", (object_id,))

    async def claim_for_review(self, object_id: str, admin_id: str, now: datetime) -> ObjectRecord:
        async def op(c: PgConn) -> ObjectRecord:
            await c.execute(
                "UPDATE objects SET review_state = 'under_review', reviewed_by = ?, updated_at = ?"
                " WHERE id = ? AND review_state = 'staged' AND uploaded_at IS NOT NULL AND status != 'deleted'",
                admin_id, now, object_id,
            )
            return await _get_object(c, object_id)

        return await self.write(op)

    async def approve_object(self, object_id: str, admin_id: str, job: Job, now: datetime) -> tuple[ObjectRecord, bool]:
        """staged/under_review → approved with a queued pipeline job; ``(object, whether it changed)``."""

        async def op(c: PgConn) -> tuple[ObjectRecord, bool]:
            changed = await c.execute(
                "UPDATE objects SET review_state = 'approved', reviewed_by = ?, reviewed_at = ?, latest_job_id = ?, updated_at = ?"
                " WHERE id = ? AND review_state IN ('staged', 'under_review') AND status = 'uploaded'",
                admin_id, now, job.id, now, object_id,
            )
            obj = await _get_object(c, object_id)
            if changed:
                await insert_job(c, job)
                await emit(c, obj.tenant_id, "object.review_decided", ev.review_decided(obj, "approved", None, job.id), now)
            return obj, bool(changed)

        return await self.write(op)

    async def reject_object(self, object_id: str, admin_id: str, reason: str | None, now: datetime) -> tuple[ObjectRecord, bool]:
        async def op(c: PgConn) -> tuple[ObjectRecord, bool]:
            before = await _get_object(c, object_id)
            changed = await c.execute(
                "UPDATE objects SET review_state = 'rejected', review_reason = ?, reviewed_by = ?, reviewed_at = ?, updated_at = ?"
                " WHERE id = ? AND review_state IN ('staged', 'under_review') AND status = 'uploaded'",
                reason, admin_id, now, now, object_id,
            )
            obj = await _get_object(c, object_id)
            if changed:
                await _uncount(c, before, now)
                await emit(c, obj.tenant_id, "object.review_decided", ev.review_decided(obj, "rejected", reason), now)
            return obj, bool(changed)

        return await self.write(op)

    async def expire_due(self, dataset_id: str, now: datetime) -> list[ObjectRecord]:
        """staged → expired for every object of the dataset whose deadline has passed."""

        async def op(c: PgConn) -> list[ObjectRecord]:
            # Three statements however many are due (a backlog after downtime can be large).
            due = [
                _object(r) for r in await c.fetch(
                    "SELECT * FROM objects WHERE dataset_id = ? AND review_state = 'staged' AND review_deadline <= ?"
                    " AND status = 'uploaded'",
                    dataset_id, now,
                )
            ]
            if not due:
                return []
            rows = await c.fetch(
                "UPDATE objects SET review_state = 'expired', review_reason = 'review window elapsed', updated_at = ?"
                " WHERE id = ANY(?) RETURNING *",
                now, [o.id for o in due],
            )
            counted = [o for o in due if o.counted]
            if counted:
                await _adjust_dataset(c, dataset_id, -len(counted), -sum(o.size_bytes for o in counted), now)
            expired = sorted((_object(r) for r in rows), key=lambda o: o.seq)
            for obj in expired:
                await emit(c, obj.tenant_id, "object.review_decided", ev.review_decided(obj, "expired", obj.review_reason), now)
            return expired

        return await self.write(op)

    async def next_review_deadline(self) -> datetime | None:
        return await self.read(
            lambda c: c.fetchval("SELECT min(review_deadline) FROM objects WHERE review_state = 'staged' AND status = 'uploaded'")
        )

    async def datasets_with_due_reviews(self, now: datetime, limit: int = 1000) -> list[str]:
        rows = await self.read(
            lambda c: c.fetch(
                "SELECT DISTINCT dataset_id FROM objects WHERE review_state = 'staged' AND status = 'uploaded'"
                " AND review_deadline <= ? LIMIT ?",
                now, limit,
            )
        )
        return [r[0] for r in rows]

    # -- jobs -----------------------------------------------------------------------------
    async def get_job(self, tenant_id: str, job_id: str) -> Job | None:
        return await self.one(
            _job, "SELECT * FROM jobs j WHERE id = ? AND tenant_id = ?" + IN_LIVE_DATASET.format(t="j"), (job_id, tenant_id)
        )

    async def get_job_any(self, job_id: str) -> Job | None:
        return await self.one(_job, "SELECT * FROM jobs WHERE id = ?", (job_id,))

    async def unfinished_jobs(self, job_type: str) -> list[Job]:
        rows = await self.read(
            lambda c: c.fetch("SELECT * FROM jobs WHERE status IN ('queued', 'running') AND type = ? ORDER BY seq", job_type)
        )
        return [_job(r) for r in rows]

    async def start_stage(self, job_id: str, stage: str, now: datetime) -> tuple[Job, ObjectRecord] | None:
        """Record that ``stage`` runs now (object status follows); None if the job is over
        or its object is no longer approved (deleted meanwhile)."""

        async def op(c: PgConn) -> tuple[Job, ObjectRecord] | None:
            job = await _get_job(c, job_id)
            obj = await _get_object(c, job.object_id)  # type: ignore[arg-type]
            if job.status not in ("queued", "running") or obj.status == "deleted" or obj.review_state != "approved":
                return None
            await c.execute(
                "UPDATE jobs SET status = 'running', stage = ?, attempts = CASE WHEN stage = ? THEN attempts + 1 ELSE 1 END,"
                " started_at = coalesce(started_at, ?) WHERE id = ?",
                stage, stage, now, job_id,
            )
            await c.execute("UPDATE objects SET status = ?, updated_at = ? WHERE id = ?", stage, now, obj.id)
            if obj.status != stage:
                await emit(c, obj.tenant_id, "object.status_changed", ev.status_changed(obj, obj.status, stage, job_id), now)
            return await _get_job(c, job_id), await _get_object(c, obj.id)

        return await self.write(op)

    async def stage_attempt_failed(self, job_id: str, error: str) -> Job:
        error = pg_text(error) or ""  # it may quote the file (a parser's message): no NUL in text

        async def op(c: PgConn) -> Job:
            await c.execute("UPDATE jobs SET error = ? WHERE id = ?", error, job_id)  # the try was counted when it started
            return await _get_job(c, job_id)

        return await self.write(op)

    async def record_normalized(self, object_id: str, mime: str) -> None:
        await self.write(lambda c: c.execute("UPDATE objects SET normalized_mime_type = ? WHERE id = ?", mime, object_id))

    async def record_artifacts(self, object_id: str, artifacts: Artifacts) -> None:
        await self.write(
            lambda c: c.execute(
                "UPDATE objects SET plain_text = ?, ocr_blocks = ?, chunk_embeddings = ?, keywords = ? WHERE id = ?",
                artifacts.plain_text, artifacts.ocr_blocks, artifacts.chunk_embeddings,
                orjson.dumps(list(artifacts.keywords)).decode(), object_id,
            )
        )

    async def finish_job(self, job_id: str, now: datetime, next_dataset_status: Callable[[str], str]) -> tuple[Job, ObjectRecord]:
        """The job succeeded: the object is active and searchable, and counted as such, once."""

        async def op(c: PgConn) -> tuple[Job, ObjectRecord]:
            job = await _get_job(c, job_id)
            obj = await _get_object(c, job.object_id)  # type: ignore[arg-type]
            if job.status in ("queued", "running") and obj.status not in ("deleted", "active"):
                await c.execute("UPDATE jobs SET status = 'succeeded', finished_at = ?, error = NULL WHERE id = ?", now, job_id)
                await c.execute("UPDATE objects SET status = 'active', failure_reason = NULL, updated_at = ? WHERE id = ?", now, obj.id)
                status = await c.fetchval("SELECT status FROM datasets WHERE id = ?", obj.dataset_id)
                await c.execute(
                    "UPDATE datasets SET active_object_count = active_object_count + 1, last_ingest_at = ?, updated_at = ?,"
                    " status = ? WHERE id = ?",
                    now, now, next_dataset_status(status), obj.dataset_id,
                )
                await emit(c, obj.tenant_id, "object.status_changed", ev.status_changed(obj, obj.status, "active", job_id), now)
            return await _get_job(c, job_id), await _get_object(c, obj.id)

        return await self.write(op)

    async def fail_job(self, job_id: str, error: str, now: datetime) -> Job:
        error = pg_text(error) or ""  # into text columns and the event's JSON: no NUL

        async def op(c: PgConn) -> Job:
            job = await _get_job(c, job_id)
            if job.status in ("queued", "running"):
                await c.execute("UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ?", error, now, job_id)
                if job.object_id:
                    before = await _get_object(c, job.object_id)
                    if await c.execute(
                        "UPDATE objects SET status = 'failed', failure_reason = ?, updated_at = ? WHERE id = ? AND status != 'deleted'",
                        error, now, job.object_id,
                    ):
                        await emit(c, before.tenant_id, "object.status_changed",
                                   ev.status_changed(before, before.status, "failed", job_id, error), now)
                    await remove_index(c, job.object_id)
            return await _get_job(c, job_id)

        return await self.write(op)
