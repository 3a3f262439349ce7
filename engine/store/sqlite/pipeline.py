"""Review decisions, pipeline jobs and the search index in SQLite (mixed into SqliteStore).

Every method is one transaction, and every state change is conditional on the state it
starts from (``WHERE review_state IN (...)``), so a decision taken twice, or a stage
reported twice after a crash, changes nothing the second time. Counters move in the same
transaction as the change that causes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import orjson

from engine.store import webhook_events as ev
from engine.store.records import IN_LIVE_DATASET, Artifacts, Job, ObjectRecord
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.objects import _adjust_dataset, _get_object, _object
from engine.store.sqlite.search import remove_index
from engine.store.sqlite.sqltime import dt, ts
from engine.store.sqlite.webhooks import emit

T = TypeVar("T")

# The review clock's queries; each is a range of the objects_review_due index (migration 0006).
_DUE = "review_state = 'staged' AND status = 'uploaded'"
NEXT_DEADLINE_SQL = f"SELECT min(review_deadline) FROM objects WHERE {_DUE}"
DUE_DATASETS_SQL = f"SELECT DISTINCT dataset_id FROM objects WHERE {_DUE} AND review_deadline <= ? LIMIT ?"
DUE_OBJECTS_SQL = f"SELECT * FROM objects WHERE dataset_id = ? AND {_DUE} AND review_deadline <= ?"

_JOB_COLUMNS = ("id", "tenant_id", "dataset_id", "type", "object_id", "import_id", "status", "stage", "attempts", "error",
                "created_at", "started_at", "finished_at")



def _job(r: sqlite3.Row) -> Job:
    return Job(
        id=r["id"], tenant_id=r["tenant_id"], dataset_id=r["dataset_id"], type=r["type"], status=r["status"],
        created_at=dt(r["created_at"]), object_id=r["object_id"], import_id=r["import_id"], stage=r["stage"],  # type: ignore[arg-type]
        attempts=r["attempts"], error=r["error"], started_at=dt(r["started_at"]), finished_at=dt(r["finished_at"]), seq=r["seq"],
    )


def insert_job(c: sqlite3.Connection, job: Job) -> None:
    c.execute(
        f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
        [ts(v) if isinstance(v, datetime) else v for v in (getattr(job, col) for col in _JOB_COLUMNS)],
    )


def _get_job(c: sqlite3.Connection, job_id: str) -> Job:
    return _job(c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def _uncount(c: sqlite3.Connection, obj: ObjectRecord, now: datetime) -> None:
    if obj.counted:
        _adjust_dataset(c, obj.dataset_id, -1, -obj.size_bytes, now)


class PipelineMixin(SqliteAccess):
    """Review, jobs and index persistence; relies on ``read``/``write`` of the store."""

    # -- review -------------------------------------------------------------------------
    async def get_object_any(self, object_id: str) -> ObjectRecord | None:
        """An object of any tenant (platform admins only)."""
        return await self.one(_object, "SELECT * FROM objects WHERE id = ?", (object_id,))

    async def claim_for_review(self, object_id: str, admin_id: str, now: datetime) -> ObjectRecord:
        def op(c: sqlite3.Connection) -> ObjectRecord:
            c.execute(
                "UPDATE objects SET review_state = 'under_review', reviewed_by = ?, updated_at = ?"
                " WHERE id = ? AND review_state = 'staged' AND uploaded_at IS NOT NULL AND status != 'deleted'",
                (admin_id, ts(now), object_id),
            )
            return _get_object(c, object_id)

        return await self.write(op, quick=True)

    async def approve_object(self, object_id: str, admin_id: str, job: Job, now: datetime) -> tuple[ObjectRecord, bool]:
        """staged/under_review → approved with a queued pipeline job; ``(object, whether it changed)``."""

        def op(c: sqlite3.Connection) -> tuple[ObjectRecord, bool]:
            changed = c.execute(
                "UPDATE objects SET review_state = 'approved', reviewed_by = ?, reviewed_at = ?, latest_job_id = ?, updated_at = ?"
                " WHERE id = ? AND review_state IN ('staged', 'under_review') AND status = 'uploaded'",
                (admin_id, ts(now), job.id, ts(now), object_id),
            ).rowcount
            obj = _get_object(c, object_id)
            if changed:
                insert_job(c, job)
                emit(c, obj.tenant_id, "object.review_decided", ev.review_decided(obj, "approved", None, job.id), now)
            return obj, bool(changed)

        return await self.write(op, quick=True)

    async def reject_object(self, object_id: str, admin_id: str, reason: str | None, now: datetime) -> tuple[ObjectRecord, bool]:
        def op(c: sqlite3.Connection) -> tuple[ObjectRecord, bool]:
            before = _get_object(c, object_id)
            changed = c.execute(
                "UPDATE objects SET review_state = 'rejected', review_reason = ?, reviewed_by = ?, reviewed_at = ?, updated_at = ?"
                " WHERE id = ? AND review_state IN ('staged', 'under_review') AND status = 'uploaded'",
                (reason, admin_id, ts(now), ts(now), object_id),
            ).rowcount
            obj = _get_object(c, object_id)
            if changed:
                _uncount(c, before, now)
                emit(c, obj.tenant_id, "object.review_decided", ev.review_decided(obj, "rejected", reason), now)
            return obj, bool(changed)

        return await self.write(op, quick=True)

    async def expire_due(self, dataset_id: str, now: datetime) -> list[ObjectRecord]:
        """staged → expired for every object of the dataset whose deadline has passed."""

        def op(c: sqlite3.Connection) -> list[ObjectRecord]:
            rows = c.execute(DUE_OBJECTS_SQL, (dataset_id, ts(now))).fetchall()
            expired = []
            for row in rows:
                before = _object(row)
                c.execute(
                    "UPDATE objects SET review_state = 'expired', review_reason = 'review window elapsed', updated_at = ? WHERE id = ?",
                    (ts(now), before.id),
                )
                _uncount(c, before, now)
                obj = _get_object(c, before.id)
                emit(c, obj.tenant_id, "object.review_decided", ev.review_decided(obj, "expired", obj.review_reason), now)
                expired.append(obj)
            return expired

        return await self.write(op)

    async def next_review_deadline(self) -> datetime | None:
        row = await self.read(lambda c: c.execute(NEXT_DEADLINE_SQL).fetchone())
        return dt(row[0])

    async def datasets_with_due_reviews(self, now: datetime, limit: int = 1000) -> list[str]:
        rows = await self.read(lambda c: c.execute(DUE_DATASETS_SQL, (ts(now), limit)).fetchall())
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
            lambda c: c.execute(
                "SELECT * FROM jobs WHERE status IN ('queued', 'running') AND type = ? ORDER BY seq", (job_type,)
            ).fetchall()
        )
        return [_job(r) for r in rows]

    async def start_stage(self, job_id: str, stage: str, now: datetime) -> tuple[Job, ObjectRecord] | None:
        """Record that ``stage`` runs now (object status follows); None if the job is over
        or its object is no longer approved (deleted meanwhile)."""

        def op(c: sqlite3.Connection) -> tuple[Job, ObjectRecord] | None:
            job = _get_job(c, job_id)
            obj = _get_object(c, job.object_id)  # type: ignore[arg-type]
            if job.status not in ("queued", "running") or obj.status == "deleted" or obj.review_state != "approved":
                return None
            c.execute(
                "UPDATE jobs SET status = 'running', stage = ?, attempts = CASE WHEN stage = ? THEN attempts + 1 ELSE 1 END,"
                " started_at = coalesce(started_at, ?) WHERE id = ?",
                (stage, stage, ts(now), job_id),
            )
            c.execute("UPDATE objects SET status = ?, updated_at = ? WHERE id = ?", (stage, ts(now), obj.id))
            if obj.status != stage:
                emit(c, obj.tenant_id, "object.status_changed", ev.status_changed(obj, obj.status, stage, job_id), now)
            return _get_job(c, job_id), _get_object(c, obj.id)

        return await self.write(op, quick=True)

    async def stage_attempt_failed(self, job_id: str, error: str) -> Job:
        def op(c: sqlite3.Connection) -> Job:
            c.execute("UPDATE jobs SET error = ? WHERE id = ?", (error, job_id))  # the try was counted when it started
            return _get_job(c, job_id)

        return await self.write(op, quick=True)

    async def record_normalized(self, object_id: str, mime: str) -> None:
        await self.write(lambda c: c.execute("UPDATE objects SET normalized_mime_type = ? WHERE id = ?", (mime, object_id)), quick=True)

    async def record_artifacts(self, object_id: str, artifacts: Artifacts) -> None:
        await self.write(
            lambda c: c.execute(
                "UPDATE objects SET plain_text = ?, ocr_blocks = ?, chunk_embeddings = ?, keywords = ? WHERE id = ?",
                (int(artifacts.plain_text), int(artifacts.ocr_blocks), int(artifacts.chunk_embeddings),
                 orjson.dumps(list(artifacts.keywords)).decode(), object_id),
            )
        )

    async def finish_job(self, job_id: str, now: datetime, next_dataset_status: Callable[[str], str]) -> tuple[Job, ObjectRecord]:
        """The job succeeded: the object is active and searchable, and counted as such, once."""

        def op(c: sqlite3.Connection) -> tuple[Job, ObjectRecord]:
            job = _get_job(c, job_id)
            obj = _get_object(c, job.object_id)  # type: ignore[arg-type]
            if job.status in ("queued", "running") and obj.status not in ("deleted", "active"):
                c.execute("UPDATE jobs SET status = 'succeeded', finished_at = ?, error = NULL WHERE id = ?", (ts(now), job_id))
                c.execute("UPDATE objects SET status = 'active', failure_reason = NULL, updated_at = ? WHERE id = ?", (ts(now), obj.id))
                (status,) = c.execute("SELECT status FROM datasets WHERE id = ?", (obj.dataset_id,)).fetchone()
                c.execute(
                    "UPDATE datasets SET active_object_count = active_object_count + 1, last_ingest_at = ?, updated_at = ?,"
                    " status = ? WHERE id = ?",
                    (ts(now), ts(now), next_dataset_status(status), obj.dataset_id),
                )
                emit(c, obj.tenant_id, "object.status_changed", ev.status_changed(obj, obj.status, "active", job_id), now)
            return _get_job(c, job_id), _get_object(c, obj.id)

        return await self.write(op, quick=True)

    async def fail_job(self, job_id: str, error: str, now: datetime) -> Job:
        def op(c: sqlite3.Connection) -> Job:
            job = _get_job(c, job_id)
            if job.status in ("queued", "running"):
                c.execute("UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ?", (error, ts(now), job_id))
                if job.object_id:
                    before = _get_object(c, job.object_id)
                    if c.execute(
                        "UPDATE objects SET status = 'failed', failure_reason = ?, updated_at = ? WHERE id = ? AND status != 'deleted'",
                        (error, ts(now), job.object_id),
                    ).rowcount:
                        emit(c, before.tenant_id, "object.status_changed",
                             ev.status_changed(before, before.status, "failed", job_id, error), now)
                    remove_index(c, job.object_id, now)
            return _get_job(c, job_id)

        return await self.write(op, quick=True)
