"""Helpers for money tests: accesses written at a chosen instant (an injected clock for the
ledger), straight through the store's own access transaction."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from engine.ids import new_id
from engine.market.pricing import ledger_entries, period_of, platform_fee
from engine.store.market import PriceInputs
from engine.store.records import Access


async def charged_access(store: Any, buyer: str, provider: str, dataset_id: str, amount: int, when: datetime,
                         api_key_id: str | None = None, currency: str = "USD", fee_bps: int = 2000) -> Access:
    """An access of ``dataset_id`` by ``buyer`` at ``when``, charged ``amount`` micros."""
    draft = Access(
        id=new_id("acc"), buyer_tenant_id=buyer, user_id=None, api_key_id=api_key_id, provider_tenant_id=provider,
        dataset_id=dataset_id, object_id=new_id("obj"), search_id=None, result_id=None, pricing_model="per_retrieval",
        monetization_mode="premium", amount_micros=0, fee_micros=0, currency=currency, period=period_of(when), created_at=when,
    )

    def price(d: Access, _inputs: PriceInputs) -> tuple[Access, list[Any]]:
        a = dataclasses.replace(d, amount_micros=amount, fee_micros=platform_fee(amount, fee_bps))
        return a, ledger_entries(a)

    access, _entries, _created = await store.record_access(draft, price, when)
    return access  # type: ignore[no-any-return]
