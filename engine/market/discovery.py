"""Who may find what (API.md "Who may find what") and the grants that widen it.

* ``private`` datasets are found by their owner's tenant only, ``listed`` ones by every
  tenant, ``restricted`` ones by the owner and tenants holding a grant.
* Other tenants never find a dataset that is paused, suspended or being deleted (the
  catalog hides the same ones); the owner finds its own in any live state.
* An ``allow_list`` API key searches only the datasets it names.
* Retrieval from a ``restricted``-monetization dataset needs a grant (or ownership).
* Grants are the owner's (scope ``datasets:write``) and count from the moment they are
  written or deleted.

Each tenant's searchable datasets are cached under the store's *discovery version*, a
counter that triggers move whenever a dataset is created or deleted, changes visibility,
monetization mode, status or owner, or a grant is added or removed (migration 0032). Every
search and retrieval reads the counter (one row) and reuses the cached list while it has
not moved, so a change counts from its commit, in every engine process sharing the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from engine.auth import Principal
from engine.errors import Conflict, Forbidden, InvalidRequest, NotFound, UniqueViolation
from engine.ids import new_id, utcnow
from engine.pagination import Page, page_of
from engine.store.base import Store
from engine.store.records import Dataset, Grant, Searchable

log = structlog.get_logger(__name__)


class GrantRequired(Forbidden):
    code = "grant_required"


@dataclass(frozen=True)
class Scope:
    """The datasets one search runs over."""

    datasets: dict[str, Searchable]  # by id

    @property
    def seqs(self) -> list[int]:
        return sorted(d.seq for d in self.datasets.values())

    def by_seq(self) -> dict[int, Searchable]:
        return {d.seq: d for d in self.datasets.values()}


class Discovery:
    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow, cache_entries: int = 4096) -> None:
        self.store = store
        self.now = now
        self._cache: OrderedDict[str, tuple[int, dict[str, Searchable]]] = OrderedDict()
        self._cache_entries = cache_entries

    async def _of_tenant(self, tenant_id: str) -> dict[str, Searchable]:
        cached = self._cache.get(tenant_id)
        version, found = await self.store.searchable_since(tenant_id, cached[0] if cached else None)
        if found is None and cached is not None:
            self._cache.move_to_end(tenant_id)
            return cached[1]
        datasets = {d.id: d for d in found or []}
        self._cache[tenant_id] = (version, datasets)
        self._cache.move_to_end(tenant_id)
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)
        return datasets

    async def searchable(self, principal: Principal) -> dict[str, Searchable]:
        found = await self._of_tenant(principal.tenant_id)
        return {i: d for i, d in found.items() if principal.may_use_dataset(i)}

    async def scope(self, principal: Principal, dataset_ids: Sequence[str] | None) -> Scope:
        """The datasets a search runs over; a named one the caller may not search → 404."""
        allowed = await self.searchable(principal)
        if not dataset_ids:
            return Scope(allowed)
        missing = [d for d in dataset_ids if d not in allowed]
        if missing:
            raise NotFound(f"dataset {missing[0]} not found", {"dataset_id": missing[0]})
        return Scope({d: allowed[d] for d in dataset_ids})

    async def retrievable(self, principal: Principal, dataset_id: str) -> Searchable:
        """The dataset an object is retrieved from: 404 unless the caller may find it,
        403 ``grant_required`` when its monetization is restricted and the caller holds no grant."""
        allowed = await self.searchable(principal)
        ds = allowed.get(dataset_id)
        if ds is None:
            raise NotFound("object not found")
        if ds.monetization_mode == "restricted" and ds.tenant_id != principal.tenant_id:
            if await self.store.find_grant(ds.id, principal.tenant_id) is None:
                raise GrantRequired(
                    "this dataset's content is restricted: its owner must grant your tenant access",
                    {"dataset_id": ds.id},
                )
        return ds

    # -- grants (the owner's) ---------------------------------------------------------------
    async def add_grant(self, principal: Principal, ds: Dataset, tenant_id: str) -> Grant:
        if tenant_id == principal.tenant_id:
            raise InvalidRequest("the owner's tenant needs no grant", {"fields": {"tenant_id": "is the dataset owner's tenant"}})
        if await self.store.get_tenant(tenant_id) is None:
            raise NotFound("tenant not found", {"tenant_id": tenant_id})
        grant = Grant(new_id("grt"), ds.id, tenant_id, principal.user_id, self.now())
        try:
            saved = await self.store.create_grant(grant)
        except UniqueViolation:
            existing = await self.store.find_grant(ds.id, tenant_id)
            raise Conflict(
                "this tenant already holds a grant for the dataset",
                {"grant_id": existing.id if existing else None, "tenant_id": tenant_id},
            ) from None
        log.info("grant_added", dataset_id=ds.id, grant_id=saved.id, grantee=tenant_id)
        return saved

    async def grants(self, ds: Dataset, cursor: str | None, limit: int) -> Page[Grant]:
        return await page_of(lambda after, n: self.store.list_grants(ds.id, after, n), cursor, limit)

    async def remove_grant(self, ds: Dataset, grant_id: str) -> None:
        if not await self.store.delete_grant(ds.id, grant_id):
            raise NotFound("grant not found")
        log.info("grant_removed", dataset_id=ds.id, grant_id=grant_id)
