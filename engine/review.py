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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
import trio

from engine import preview
from engine.actors.messages import Message
from engine.actors.supervisor import Supervisor
from engine.auth import Principal
from engine.errors import Conflict, EngineError, NotFound
from engine.ids import new_id, utcnow
from engine.objects import Objects
from engine.offload import cpu_bound
from engine.pagination import Page, check_limit, decode_cursor, encode_cursor, make_page
from engine.store.base import Store
from engine.store.records import Job, ObjectRecord, QueueFilter

log = structlog.get_logger(__name__)

PENDING = ("staged", "under_review")  # the queue when no review_state is asked for
BATCH_MAX = 100  # objects in one bulk approval
BATCH_CONCURRENCY = 8  # approvals of one batch in flight at once
PREVIEW_SLOTS = 2  # previews built at once (each may parse a PDF or decode an image)

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
        preview_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.objects = objects
        self.actors = actors
        self.start_pipeline = start_pipeline
        self.now = now
        self.preview_max_bytes = preview_max_bytes
        self._preview_slots = trio.CapacityLimiter(PREVIEW_SLOTS)

    async def _object(self, object_id: str) -> ObjectRecord:
        obj = await self.store.get_object_any(object_id)
        if obj is None or obj.uploaded_at is None:
            raise NotFound("staged object not found")
        return obj

    # -- admin API ------------------------------------------------------------------------
    async def queue(
        self, f: QueueFilter, cursor: str | None, limit: int, *, oldest_first: bool = False
    ) -> tuple[Page[ObjectRecord], str | None]:
        """A page of the queue, and (oldest first only) the *poll cursor*: the position after
        the page's last object, which a client asks with again to get what arrived since."""
        check_limit(limit)
        rows = await self.store.list_review_queue(f, decode_cursor(cursor), limit + 1, oldest_first=oldest_first)
        page = make_page(rows, limit)
        if not oldest_first:
            return page, None
        return page, encode_cursor(page.items[-1].seq) if page.items else cursor

    async def names(self, objects: Sequence[ObjectRecord]) -> dict[str, str]:
        """The names of the tenants and datasets of ``objects``, by id (for a reviewer's eyes)."""
        names: dict[str, str] = {}
        for obj in objects:
            if obj.tenant_id not in names and (tenant := await self.store.get_tenant(obj.tenant_id)) is not None:
                names[tenant.id] = tenant.name
            if obj.dataset_id not in names and (ds := await self.store.get_dataset(obj.tenant_id, obj.dataset_id)) is not None:
                names[ds.id] = ds.name
        return names

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

    async def approve_many(self, admin: Principal, object_ids: Sequence[str]) -> list[tuple[ObjectRecord, str] | EngineError]:
        """Approve each object on its own: one that cannot be approved fails alone."""
        results: list[tuple[ObjectRecord, str] | EngineError] = [NotFound("not decided")] * len(object_ids)
        slots = trio.CapacityLimiter(BATCH_CONCURRENCY)

        async def one(index: int, object_id: str) -> None:
            async with slots:
                try:
                    results[index] = await self.approve(admin, object_id)
                except EngineError as exc:
                    results[index] = exc

        async with trio.open_nursery() as nursery:
            for index, object_id in enumerate(object_ids):
                nursery.start_soon(one, index, object_id)
        return results

    async def reject(self, admin: Principal, object_id: str, reason: str | None) -> ObjectRecord:
        obj = await self._object(object_id)
        if obj.review_state == "rejected":
            return obj
        check_review(obj, "rejected")
        rejected: ObjectRecord = await self.actors.ask(obj.dataset_id, Reject(object_id, admin.user_id, reason))
        return rejected

    # -- previews ---------------------------------------------------------------------------
    async def _bytes_problem(self, obj: ObjectRecord) -> str | None:
        """Why there is nothing to preview, or None."""
        if obj.status == "deleted" or obj.review_state in ("rejected", "expired"):
            return f"the object's bytes were purged ({obj.review_state if obj.status != 'deleted' else 'deleted'})"
        if obj.size_bytes > self.preview_max_bytes:
            return f"too large to preview ({obj.size_bytes} bytes; review.preview_max_bytes is {self.preview_max_bytes})"
        if not await self.objects.blobs.exists(obj.blob_id):
            return "the object's bytes are missing from the blob store"
        return None

    async def preview(self, object_id: str) -> tuple[ObjectRecord, preview.Preview]:
        """What the object's bytes show (text, pages, an image), without changing its state."""
        obj = await self._object(object_id)
        problem = await self._bytes_problem(obj)
        if problem is not None:
            return obj, preview.Preview("none", None, problem)
        async with self._preview_slots, self.objects.blobs.object_file(obj.blob_id) as path:
            shown: preview.Preview = await cpu_bound(preview.build, path, obj.mime_type)
        return obj, shown

    async def preview_image(self, object_id: str) -> tuple[bytes, str]:
        """The object's picture re-encoded (``(bytes, content type)``); NotFound when it has none."""
        obj = await self._object(object_id)
        problem = await self._bytes_problem(obj)
        if problem is not None:
            raise NotFound(f"this object has no image preview: {problem}")
        try:
            async with self._preview_slots, self.objects.blobs.object_file(obj.blob_id) as path:
                rendered: tuple[bytes, str] = await cpu_bound(preview.render_image, path)
        except ValueError as exc:
            raise NotFound(f"this object has no image preview: {exc}") from None
        return rendered

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
