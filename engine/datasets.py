"""Datasets (seed 002): fields, defaults, enums and the lifecycle (seed 003).

Lifecycle, checked in one table (:data:`TRANSITIONS`; README "Dataset lifecycle" lists
every move)::

    draft ──(first object/import accepted)──▶ ingesting ──(first content active)──▶ active
      │                                          │                                   │
      ├──────────── owner: PATCH status=paused ──┴───────────────────────────────────┤
      │                            ▼                                                 │
      │                          paused ──(owner: PATCH status=active)──▶ draft | ingesting | active
      └──────────── owner: PATCH status=archived (also from paused) ─────────────────┘
                                   ▼
                                archived ──(owner: PATCH status=active)──▶ draft | ingesting | active
    any live state ──(platform admin: suspend)──▶ suspended ──(unsuspend)──▶ draft | ingesting | active
    any live state ──(owner: DELETE)──▶ pending_deletion ──(objects and index purged)──▶ deleted

"Resuming" (from paused, archived or suspended) lands in the state the content warrants:
``active`` when something is searchable, ``ingesting`` when objects exist, else
``draft``. Paused, archived and suspended datasets accept no uploads or imports and are
not in the catalog; a suspended one cannot be changed by its owner (only deleted). A
deleted dataset, and every object of it, answers 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from engine.actors.messages import Message
from engine.actors.supervisor import Supervisor
from engine.auth import Principal
from engine.errors import Conflict, Forbidden, NotFound
from engine.ids import new_id, utcnow
from engine.pagination import Page, check_limit, decode_cursor, make_page, page_of
from engine.store.base import Store
from engine.store.records import CatalogEntry, Dataset

log = structlog.get_logger(__name__)

SOURCE_MODALITIES = ("document", "text", "image", "audio", "video", "tabular", "mixed")
MONETIZATION_MODES = ("open", "premium", "restricted")
PRICING_MODELS = ("demand_curve", "flat_rate", "per_retrieval", "free")
VISIBILITIES = ("private", "restricted", "listed")
STATUSES = ("draft", "ingesting", "active", "paused", "archived", "suspended", "pending_deletion", "deleted")
OWNER_SETTABLE_STATUSES = ("active", "paused", "archived")
RESUMABLE = ("paused", "archived")
ACCEPTS_CONTENT = ("draft", "ingesting", "active")  # statuses in which uploads and imports are taken  # PATCH status=active from these lands on resumed_status()

DEFAULTS: Mapping[str, Any] = {
    "description": None,
    "source_modality": "document",
    "monetization_mode": "open",
    "pricing_model": "demand_curve",
    "visibility": "private",
}

# (from, to) → who may make the move.
TRANSITIONS: Mapping[tuple[str, str], frozenset[str]] = {
    ("draft", "ingesting"): frozenset({"system"}),
    ("draft", "active"): frozenset({"system"}),
    ("ingesting", "active"): frozenset({"system"}),
    **{(s, "paused"): frozenset({"owner"}) for s in ("draft", "ingesting", "active")},
    **{("paused", s): frozenset({"owner"}) for s in ("draft", "ingesting", "active")},
    **{(s, "archived"): frozenset({"owner"}) for s in ("draft", "ingesting", "active", "paused")},
    **{("archived", s): frozenset({"owner"}) for s in ("draft", "ingesting", "active")},
    **{(s, "suspended"): frozenset({"admin"}) for s in ("draft", "ingesting", "active", "paused", "archived")},
    **{("suspended", s): frozenset({"admin"}) for s in ("draft", "ingesting", "active")},
    **{(s, "pending_deletion"): frozenset({"owner"}) for s in ("draft", "ingesting", "active", "paused", "archived", "suspended")},
    ("pending_deletion", "deleted"): frozenset({"system"}),
}


def check_transition(current: str, target: str, actor: str) -> None:
    """Raise Conflict (with the current state) unless ``actor`` may move ``current → target``."""
    if actor not in TRANSITIONS.get((current, target), frozenset()):
        raise Conflict(
            f"a dataset cannot go from {current} to {target}",
            {"current_status": current, "requested_status": target},
        )


def resumed_status(ds: Dataset) -> str:
    """Where a paused or suspended dataset goes back to, judged by its content."""
    if ds.active_object_count > 0 or ds.total_datapoint_count > 0:
        return "active"
    if ds.object_count > 0:
        return "ingesting"
    return "draft"


@dataclass(frozen=True)
class UpdateDataset(Message):
    principal: Principal
    dataset_id: str
    fields: dict[str, Any]

    async def apply(self, ctx: Any) -> Dataset:
        return await ctx.datasets.apply_update(self.principal, self.dataset_id, self.fields)


@dataclass(frozen=True)
class ModerateDataset(Message):
    dataset_id: str
    suspend: bool

    async def apply(self, ctx: Any) -> Dataset:
        return await ctx.datasets.apply_moderation(self.dataset_id, self.suspend)


@dataclass(frozen=True)
class DeleteDataset(Message):
    principal: Principal
    dataset_id: str

    async def apply(self, ctx: Any) -> None:
        await ctx.datasets.apply_delete(self.principal, self.dataset_id, ctx.objects.purge_dataset)


class Datasets:
    """Dataset use cases, always scoped to the caller's tenant and key."""

    def __init__(self, store: Store, actors: Supervisor, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.actors = actors
        self.now = now

    async def get(self, principal: Principal, dataset_id: str) -> Dataset:
        """The caller's dataset: 404 when absent or another tenant's, 403 when the key may not use it."""
        ds = await self.store.get_dataset(principal.tenant_id, dataset_id)
        if ds is None:
            raise NotFound("dataset not found")
        principal.require_dataset(ds.id)
        return ds

    async def get_accepting(self, principal: Principal, dataset_id: str, what: str) -> Dataset:
        """The caller's dataset, if it takes new content now (409 naming its status if not)."""
        ds = await self.get(principal, dataset_id)
        if ds.status not in ACCEPTS_CONTENT:
            raise Conflict(f"a {ds.status} dataset does not accept {what}", {"current_status": ds.status})
        return ds

    async def create(self, principal: Principal, fields: Mapping[str, Any]) -> Dataset:
        if principal.dataset_access_mode == "allow_list":
            raise Forbidden("an allow-list API key cannot create datasets: it could not use them")
        now = self.now()
        values = {**DEFAULTS, **fields}
        ds = Dataset(
            id=new_id("dset"), tenant_id=principal.tenant_id, status="draft", created_at=now, updated_at=now, **values
        )
        await self.store.create_dataset(ds)
        log.info("dataset_created", dataset_id=ds.id)
        return ds

    async def list(
        self, principal: Principal, status: str | None, visibility: str | None, cursor: str | None, limit: int
    ) -> tuple[Page[Dataset], int]:
        check_limit(limit)
        only = principal.dataset_ids if principal.dataset_access_mode == "allow_list" else None
        rows, total = await self.store.list_datasets(
            principal.tenant_id, status=status, visibility=visibility, only_ids=only,
            after=decode_cursor(cursor), limit=limit + 1,
        )
        return make_page(rows, limit), total

    async def update(self, principal: Principal, dataset_id: str, fields: Mapping[str, Any]) -> Dataset:
        ds = await self.get(principal, dataset_id)
        updated: Dataset = await self.actors.ask(ds.id, UpdateDataset(principal, ds.id, dict(fields)))
        return updated

    async def apply_update(self, principal: Principal, dataset_id: str, fields: Mapping[str, Any]) -> Dataset:
        """In the dataset's actor."""
        ds = await self.get(principal, dataset_id)
        changes = dict(fields)
        if ds.status == "suspended" and changes:
            raise Conflict("a suspended dataset cannot be changed by its owner: a platform admin lifts the suspension",
                           {"current_status": ds.status})
        if "status" in changes:
            target = changes["status"]
            if target == ds.status:
                del changes["status"]
            elif target == "active" and ds.status in RESUMABLE:
                changes["status"] = resumed_status(ds)
            else:
                check_transition(ds.status, target, "owner")
        if ds.status in ("pending_deletion",) and changes:
            raise Conflict("a dataset being deleted cannot be changed", {"current_status": ds.status})
        if not changes:
            return ds
        changes["updated_at"] = self.now()
        updated = await self.store.update_dataset(principal.tenant_id, dataset_id, changes)
        if updated is None:
            raise NotFound("dataset not found")
        log.info("dataset_updated", dataset_id=dataset_id, fields=sorted(fields))
        return updated

    async def moderate(self, dataset_id: str, *, suspend: bool) -> Dataset:
        """A platform admin suspends (or lifts the suspension of) any tenant's dataset."""
        ds = await self.store.get_dataset_any(dataset_id)
        if ds is None:
            raise NotFound("dataset not found")
        moderated: Dataset = await self.actors.ask(ds.id, ModerateDataset(ds.id, suspend))
        return moderated

    async def apply_moderation(self, dataset_id: str, suspend: bool) -> Dataset:
        """In the dataset's actor. Suspending a suspended dataset changes nothing; lifting
        a suspension lands on the state the content warrants."""
        ds = await self.store.get_dataset_any(dataset_id)
        if ds is None:
            raise NotFound("dataset not found")
        if suspend and ds.status == "suspended":
            return ds
        if not suspend and ds.status != "suspended":
            raise Conflict("the dataset is not suspended", {"current_status": ds.status})
        target = "suspended" if suspend else resumed_status(ds)
        check_transition(ds.status, target, "admin")
        updated = await self.store.update_dataset(ds.tenant_id, ds.id, {"status": target, "updated_at": self.now()})
        if updated is None:
            raise NotFound("dataset not found")
        log.info("dataset_suspended" if suspend else "dataset_unsuspended", dataset_id=ds.id, tenant_id=ds.tenant_id, status=target)
        return updated

    async def delete(self, principal: Principal, dataset_id: str) -> None:
        ds = await self.get(principal, dataset_id)
        await self.actors.ask(ds.id, DeleteDataset(principal, ds.id))

    async def apply_delete(self, principal: Principal, dataset_id: str, purge: Callable[[Principal, str], Awaitable[int]]) -> None:
        """In the dataset's actor: ``pending_deletion``, then ``purge`` (objects, blobs,
        index), then ``deleted``. A crash in between leaves ``pending_deletion``; deleting
        again finishes the job."""
        ds = await self.get(principal, dataset_id)
        if ds.status != "pending_deletion":
            check_transition(ds.status, "pending_deletion", "owner")
            await self.store.update_dataset(
                principal.tenant_id, dataset_id, {"status": "pending_deletion", "updated_at": self.now()}
            )
        purged = await purge(principal, dataset_id)
        log.info("dataset_purged", dataset_id=dataset_id, objects=purged)
        check_transition("pending_deletion", "deleted", "system")
        await self.store.update_dataset(principal.tenant_id, dataset_id, {"status": "deleted", "updated_at": self.now()})
        log.info("dataset_deleted", dataset_id=dataset_id)

    async def catalog(self, cursor: str | None, limit: int) -> Page[CatalogEntry]:
        return await page_of(self.store.list_catalog, cursor, limit)
