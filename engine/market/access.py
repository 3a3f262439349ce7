"""``POST /v1/objects/{id}/access``: a retrieval event, its price, its ledger entries.

The caller must be able to find the object by search (404 otherwise, as for any id it
cannot see) and, for a ``restricted``-monetization dataset, hold a grant (403
``grant_required``). The access row, its charge and fee entries, and the reads the price
rests on are one store transaction (:meth:`Store.record_access`). With an
``Idempotency-Key``, the access carries the key's hash: a retry finds the same access and
charge even when the first attempt's answer was never stored (a ``kill -9`` between the
commit and the answer), and the retry answers with a fresh download URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from engine import failpoints
from engine.auth import Principal
from engine.errors import NotFound
from engine.ids import new_id, utcnow
from engine.market.discovery import Discovery
from engine.market.pricing import DEMAND_WINDOW, period_of, pricer
from engine.market.recorder import Recorder
from engine.store.base import Store
from engine.store.blobs.base import BlobStore
from engine.store.records import Access, LedgerEntry, ObjectRecord

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Retrieval:
    obj: ObjectRecord
    access: Access
    entries: list[LedgerEntry]
    download_url: str
    expires_at: datetime
    created: bool


class Accesses:
    def __init__(self, store: Store, discovery: Discovery, recorder: Recorder, blobs: BlobStore, fee_bps: int, url_ttl_seconds: int,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.discovery = discovery
        self.recorder = recorder
        self.blobs = blobs
        self.fee_bps = fee_bps
        self.url_ttl = timedelta(seconds=url_ttl_seconds)
        self.now = now
        self.on_charged: Callable[[str], None] | None = None  # a charge in a month: its statement's deadline exists

    async def access(self, principal: Principal, object_id: str, search_id: str | None, result_id: str | None,
                     idempotency_key: str | None) -> Retrieval:
        obj = await self.store.get_object_any(object_id)
        if obj is None or obj.status != "active":
            raise NotFound("object not found")
        await self.discovery.retrievable(principal, obj.dataset_id)
        dataset = await self.store.get_dataset(obj.tenant_id, obj.dataset_id)
        if dataset is None:
            raise NotFound("object not found")
        if search_id is not None:
            known = self.recorder.pending_search(principal.tenant_id, search_id) or await self.store.get_search(principal.tenant_id, search_id)
            if known is None:
                raise NotFound("search not found", {"search_id": search_id})
        now = self.now()
        draft = Access(
            id=new_id("acc"), buyer_tenant_id=principal.tenant_id, user_id=principal.user_id, api_key_id=principal.api_key_id,
            provider_tenant_id=obj.tenant_id, dataset_id=obj.dataset_id, object_id=obj.id, search_id=search_id, result_id=result_id,
            pricing_model=dataset.pricing_model, monetization_mode=dataset.monetization_mode, amount_micros=0, fee_micros=0,
            currency=dataset.currency, period=period_of(now), created_at=now,
            idempotency_principal=principal.id if idempotency_key else None,
            idempotency_key=hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else None,
        )
        access, entries, created = await self.store.record_access(draft, pricer(dataset.price_micros, self.fee_bps), now - DEMAND_WINDOW)
        failpoints.hit("access.after_commit")
        if created:
            log.info("access_created", access_id=access.id, object_id=obj.id, dataset_id=obj.dataset_id,
                     amount_micros=access.amount_micros, fee_micros=access.fee_micros)
            if access.amount_micros and self.on_charged is not None:
                self.on_charged(access.period)
        expires_at = self.now() + self.url_ttl
        return Retrieval(obj, access, entries, await self.blobs.download_url(obj, expires_at), expires_at, created)

    async def current_prices(self, principal: Principal | None, datasets: list[tuple[str, str, str, str, int]]) -> dict[str, int]:
        """``current_price_micros`` per dataset ``(id, owner tenant, monetization, model, price)``:
        what the caller's next retrieval would be charged (for the owner: a buyer's next)."""
        from engine.market.pricing import price_of
        from engine.store.market import PriceInputs

        now = self.now()
        ids = [d[0] for d in datasets]
        recent = await self.store.recent_access_counts([d[0] for d in datasets if d[3] == "demand_curve"], now - DEMAND_WINDOW) \
            if any(d[3] == "demand_curve" for d in datasets) else {}
        paid: set[str] = set()
        if principal is not None and any(d[3] == "flat_rate" and d[1] != principal.tenant_id for d in datasets):
            paid = await self.store.paid_datasets(principal.tenant_id, ids, period_of(now))
        return {
            ds_id: price_of(mode, model, price, PriceInputs(ds_id in paid, recent.get(ds_id, 0)))
            for ds_id, _owner, mode, model, price in datasets
        }
