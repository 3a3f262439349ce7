"""Disputes (API.md "Disputes"): a buyer disputes a charged access within the hold window
of the access's month; a platform admin refunds or rejects it.

While a dispute is open its access's money is held back from the provider's payout. A
refund writes negative ledger entries in the resolution's transaction: ``refund`` of the
whole charge and ``fee_refund`` of the platform fee in proportion (``−F·R/N`` rounded
toward zero, i.e. the whole fee for a whole refund), so the buyer's spend and the
provider's gross and earnings all drop and the platform keeps no fee on refunded money.
A reject releases the hold. When the access's month was already paid out (the amount was
held), the resolved amount goes into the next statement released.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from engine.auth import Principal
from engine.errors import AlreadyDisputed, InvalidRequest, NotDisputable, NotFound
from engine.ids import iso, new_id
from engine.market.pricing import period_of
from engine.pagination import Page, page_of
from engine.store.base import Store
from engine.store.money import DISPUTE_STATES, Dispute, Payout, month_bounds
from engine.store.records import Access, LedgerEntry

log = structlog.get_logger(__name__)

OUTCOMES = {"refund": "refunded", "reject": "rejected"}


def release_at(period: str, hold: timedelta) -> datetime:
    """When the month's statement is released: its end plus the hold window."""
    return month_bounds(period)[1] + hold


def refund_entries(now: datetime) -> Callable[[Access, Dispute], list[LedgerEntry]]:
    """The negative entries refunding a whole access (called inside the resolution's transaction)."""

    def build(access: Access, dispute: Dispute) -> list[LedgerEntry]:
        refunded = access.amount_micros
        fee_back = access.fee_micros * refunded // access.amount_micros

        def entry(kind: str, amount: int) -> LedgerEntry:
            return LedgerEntry(
                id=new_id("led"), access_id=access.id, kind=kind, amount_micros=amount, currency=access.currency,
                buyer_tenant_id=access.buyer_tenant_id, provider_tenant_id=access.provider_tenant_id, dataset_id=access.dataset_id,
                api_key_id=access.api_key_id, period=access.period, created_at=now, dispute_id=dispute.id,
            )

        return [entry("refund", -refunded)] + ([entry("fee_refund", -fee_back)] if fee_back else [])

    return build


class Disputes:
    def __init__(self, store: Store, hold_seconds: int, now: Callable[[], datetime],
                 on_change: Callable[[datetime], None] | None = None) -> None:
        self.store = store
        self.hold = timedelta(seconds=hold_seconds)
        self.now = now
        self.on_change = on_change  # wakes the settlement clock when a resolution adds to a statement

    async def open(self, principal: Principal, access_id: str, reason: str) -> Dispute:
        access = await self.store.get_access(principal.tenant_id, access_id)
        if access is None:
            raise NotFound("access not found")
        if access.amount_micros == 0:
            raise NotDisputable("a free access cannot be disputed", {"access_id": access_id, "amount_micros": 0})
        now = self.now()
        closes = release_at(access.period, self.hold)
        if now >= closes:
            raise NotDisputable("the dispute window of this access closed", {"access_id": access_id, "window_closed_at": iso(closes)})
        dispute = Dispute(
            id=new_id("dsp"), access_id=access.id, buyer_tenant_id=access.buyer_tenant_id, provider_tenant_id=access.provider_tenant_id,
            dataset_id=access.dataset_id, amount_micros=access.amount_micros, currency=access.currency, period=access.period,
            reason=reason, status="open", opened_by=principal.api_key_id or principal.user_id or principal.id, created_at=now,
        )
        made = await self.store.open_dispute(dispute)
        if made is None:
            raise AlreadyDisputed("this access was already disputed", {"access_id": access_id})
        log.info("dispute_opened", dispute_id=made.id, access_id=access_id, amount_micros=made.amount_micros)
        return made

    async def list(self, status: str | None, cursor: str | None, limit: int) -> Page[Dispute]:
        if status is not None and status not in DISPUTE_STATES:
            raise InvalidRequest(f"status must be one of {', '.join(DISPUTE_STATES)}", {"fields": {"status": "unknown status"}})
        return await page_of(lambda after, n: self.store.list_disputes(status, after, n), cursor, limit)

    async def get(self, dispute_id: str) -> Dispute:
        found = await self.store.get_dispute(dispute_id)
        if found is None:
            raise NotFound("dispute not found")
        return found

    async def resolve(self, principal: Principal, dispute_id: str, outcome: str) -> Dispute:
        if outcome not in OUTCOMES:
            raise InvalidRequest("outcome must be refund or reject", {"fields": {"outcome": "must be refund or reject"}})
        dispute = await self.get(dispute_id)
        now = self.now()
        period = period_of(now)
        start, end = month_bounds(period)
        carry = Payout(new_id("pay"), dispute.provider_tenant_id, period, dispute.currency, start, end, now)
        done = await self.store.resolve_dispute(dispute_id, OUTCOMES[outcome], principal.user_id or principal.id, now,
                                                refund_entries(now), carry)
        log.info("dispute_resolved", dispute_id=dispute_id, outcome=done.status, amount_micros=done.amount_micros)
        if self.on_change is not None:
            self.on_change(release_at(period, self.hold))
        return done
