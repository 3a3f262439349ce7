"""Prices of retrievals (API.md "Prices") and the ledger entries an access writes.

All money is integer micros. ``demand_curve`` multiplies by ``min(3, 1 + log10(1 + a/100))``
= ``min(3, log10(100 + a) − 1)``, computed in decimal arithmetic (28 digits) and rounded
down, so the same ``a`` gives the same price on every machine.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext

from engine.ids import new_id
from engine.store.market import AccessPricer, PriceInputs
from engine.store.records import Access, LedgerEntry

DEMAND_WINDOW = timedelta(days=30)
_THREE = Decimal(3)


def period_of(when: datetime) -> str:
    """The UTC calendar month of ``when``, ``YYYY-MM``."""
    return when.astimezone(UTC).strftime("%Y-%m")


def demand_price(price_micros: int, recent_accesses: int) -> int:
    with localcontext() as ctx:
        ctx.prec = 28
        factor = min(_THREE, Decimal(100 + recent_accesses).log10() - 1)
        return int((Decimal(price_micros) * factor).to_integral_value(rounding=ROUND_FLOOR))


def price_of(monetization_mode: str, pricing_model: str, price_micros: int, inputs: PriceInputs) -> int:
    """What the next retrieval by a tenant other than the owner is charged."""
    if monetization_mode == "open" or pricing_model == "free":
        return 0
    if pricing_model == "per_retrieval":
        return price_micros
    if pricing_model == "flat_rate":
        return 0 if inputs.paid_this_period else price_micros
    if pricing_model == "demand_curve":
        return demand_price(price_micros, inputs.recent_accesses)
    raise ValueError(f"unknown pricing model {pricing_model!r}")


def platform_fee(amount_micros: int, fee_bps: int) -> int:
    """The platform's part of a charge, rounded down."""
    return amount_micros * fee_bps // 10_000


def ledger_entries(access: Access) -> list[LedgerEntry]:
    """The charge and fee entries of a charged access (none for a free one)."""
    if access.amount_micros == 0:
        return []
    def entry(kind: str, amount: int) -> LedgerEntry:
        return LedgerEntry(
            id=new_id("led"), access_id=access.id, kind=kind, amount_micros=amount, currency=access.currency,
            buyer_tenant_id=access.buyer_tenant_id, provider_tenant_id=access.provider_tenant_id, dataset_id=access.dataset_id,
            api_key_id=access.api_key_id, period=access.period, created_at=access.created_at,
        )

    entries = [entry("charge", access.amount_micros)]
    if access.fee_micros:
        entries.append(entry("fee", access.fee_micros))
    return entries


def pricer(price_micros: int, fee_bps: int) -> AccessPricer:
    """The function the store calls inside the access's transaction: the owner is never
    charged; anyone else pays :func:`price_of` with the inputs read in that transaction."""

    def price(draft: Access, inputs: PriceInputs) -> tuple[Access, list[LedgerEntry]]:
        owner = draft.buyer_tenant_id == draft.provider_tenant_id
        amount = 0 if owner else price_of(draft.monetization_mode, draft.pricing_model, price_micros, inputs)
        access = dataclasses.replace(draft, amount_micros=amount, fee_micros=platform_fee(amount, fee_bps))
        return access, ledger_entries(access)

    return price
