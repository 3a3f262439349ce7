"""Admin review of staged objects (seeds 000, 001): claim, approve, reject, expire.

Review states, checked in one table (:data:`REVIEW_TRANSITIONS`)::

    staged ──(admin opens or claims)──▶ under_review
    staged | under_review ──(approve)──▶ approved ──▶ pipeline
    staged | under_review ──(reject)───▶ rejected   (bytes purged, never indexed)
    staged ──(review.window_seconds after upload)──▶ expired (bytes purged, never indexed)

Only ``staged`` objects expire, as the seed's state diagram draws it: an object an admin
has opened waits for that admin's decision. Every decision is applied by the dataset's
actor; an illegal one (approve a rejected object) is a 409 carrying the current state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from engine.actors.messages import Message
from engine.actors.supervisor import Supervisor
from engine.auth import Principal
from engine.errors import Conflict, NotFound
from engine.ids import new_id, utcnow
from engine.objects import Objects
from engine.pagination import Page, page_of
from engine.store.base import Store
from engine.store.records import Job, ObjectRecord

log = structlog.get_logger(__name__)

REVIEW_TRANSITIONS: Mapping[tuple[str, str], str] = {
    ("staged", "under_review"): "admin",
    ("staged", "approved"): "admin",
    ("under_review", "approved"): "admin",
    ("staged", "rejected"): "admin",
    ("under_review", "rejected"): "admin",
    ("staged", "expired"): "system",
}


def check_review(obj: ObjectRecord, target: str) -> None:
    """Raise Conflict (with the current state) unless ``obj`` may move to ``target``."""
    if obj.status == "deleted" or obj.uploaded_at is None:
        raise Conflict(f"this object cannot be {target}: it is {obj.status}", {"status": obj.status, "review_state": obj.review_state})
    if (obj.review_state, target) not in REVIEW_TRANSITIONS:
        raise Conflict(
            f"an object that is {obj.review_state} cannot become {target}",
            {"review_state": obj.review_state, "requested_review_state": target, "status": obj.status},
        )


@dataclass(frozen=True)
class Claim(Message):
    object_id: str
    admin_id: str

    async def apply(self, ctx: Any) -> ObjectRecord:
        return await ctx.review.apply_claim(self.object_id, self.admin_id)


@dataclass(frozen=True)
class Approve(Message):
    object_id: str
    admin_id: str

    async def apply(self, ctx: Any) -> tuple[ObjectRecord, str]:
        return await ctx.review.apply_approve(self.object_id, self.admin_id)


@dataclass(frozen=True)
class Reject(Message):
    object_id: str
    admin_id: str
    reason: str | None

    async def apply(self, ctx: Any) -> ObjectRecord:
        return await ctx.review.apply_reject(self.object_id, self.admin_id, self.reason)


@dataclass(frozen=True)
class ExpireDue(Message):
    dataset_id: str

    async def apply(self, ctx: Any) -> int:
        return await ctx.review.apply_expire(self.dataset_id)


class Review:
    def __init__(
        self,
        store: Store,
        objects: Objects,
        actors: Supervisor,
        start_pipeline: Callable[[Job], object],
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.objects = objects
        self.actors = actors
        self.start_pipeline = start_pipeline
        self.now = now

    async def _object(self, object_id: str) -> ObjectRecord:
        obj = await self.store.get_object_any(object_id)
        if obj is None or obj.uploaded_at is None:
            raise NotFound("staged object not found")
        return obj

    # -- admin API ------------------------------------------------------------------------
    async def queue(self, review_state: str | None, tenant_id: str | None, cursor: str | None, limit: int) -> Page[ObjectRecord]:
        states = (review_state,) if review_state else ("staged", "under_review")
        return await page_of(lambda after, n: self.store.list_review_queue(states, tenant_id, after, n), cursor, limit)

    async def open(self, admin: Principal, object_id: str) -> ObjectRecord:
        """An admin opening a staged object claims it (``under_review``)."""
        obj = await self._object(object_id)
        if obj.review_state != "staged":
            return obj
        return await self.claim(admin, object_id)

    async def claim(self, admin: Principal, object_id: str) -> ObjectRecord:
        obj = await self._object(object_id)
        if obj.review_state == "under_review":
            return obj
        check_review(obj, "under_review")
        claimed: ObjectRecord = await self.actors.ask(obj.dataset_id, Claim(object_id, admin.user_id))
        return claimed

    async def approve(self, admin: Principal, object_id: str) -> tuple[ObjectRecord, str]:
        obj = await self._object(object_id)
        if obj.review_state == "approved" and obj.latest_job_id:
            return obj, obj.latest_job_id  # approving twice is harmless
        check_review(obj, "approved")
        result: tuple[ObjectRecord, str] = await self.actors.ask(obj.dataset_id, Approve(object_id, admin.user_id))
        return result

    async def reject(self, admin: Principal, object_id: str, reason: str | None) -> ObjectRecord:
        obj = await self._object(object_id)
        if obj.review_state == "rejected":
            return obj
        check_review(obj, "rejected")
        rejected: ObjectRecord = await self.actors.ask(obj.dataset_id, Reject(object_id, admin.user_id, reason))
        return rejected

    # -- in the dataset's actor ---------------------------------------------------------------
    async def apply_claim(self, object_id: str, admin_id: str) -> ObjectRecord:
        obj = await self._object(object_id)
        check_review(obj, "under_review")
        return await self.store.claim_for_review(object_id, admin_id, self.now())

    async def apply_approve(self, object_id: str, admin_id: str) -> tuple[ObjectRecord, str]:
        obj = await self._object(object_id)
        check_review(obj, "approved")
        now = self.now()
        job = Job(
            id=new_id("job"), tenant_id=obj.tenant_id, dataset_id=obj.dataset_id, type="pipeline", status="queued",
            created_at=now, object_id=obj.id, stage="normalizing",
        )
        approved, changed = await self.store.approve_object(object_id, admin_id, job, now)
        if not changed:
            check_review(approved, "approved")  # raises with the state it is in now
        self.start_pipeline(job)  # the job is durable first; the run starts after
        log.info("object_approved", object_id=object_id, job_id=job.id)
        return approved, job.id

    async def apply_reject(self, object_id: str, admin_id: str, reason: str | None) -> ObjectRecord:
        obj = await self._object(object_id)
        check_review(obj, "rejected")
        rejected, changed = await self.store.reject_object(object_id, admin_id, reason, self.now())
        if not changed:
            check_review(rejected, "rejected")
        await self.objects.purge_bytes(rejected)
        log.info("object_rejected", object_id=object_id, reason=reason)
        return rejected

    async def apply_expire(self, dataset_id: str) -> int:
        expired = await self.store.expire_due(dataset_id, self.now())
        for obj in expired:
            await self.objects.purge_bytes(obj)
            log.info("object_expired", object_id=obj.id)
        return len(expired)
