"""Prices in integer micros: the four models, the platform fee, the ledger entries."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.market.pricing import demand_price, ledger_entries, period_of, platform_fee, price_of, pricer
from engine.store.market import PriceInputs
from engine.store.records import Access

FRESH, PAID = PriceInputs(False, 0), PriceInputs(True, 0)


def test_models():
    assert price_of("premium", "free", 5, FRESH) == 0
    assert price_of("premium", "per_retrieval", 5, PAID) == 5
    assert price_of("restricted", "flat_rate", 5, FRESH) == 5 and price_of("premium", "flat_rate", 5, PAID) == 0
    assert price_of("open", "per_retrieval", 5, FRESH) == 0  # open is always free


def test_demand_curve_rounds_down_and_caps_at_three():
    assert [demand_price(1_000_000, a) for a in (0, 1, 100, 900, 9_900, 10**9)] == [
        1_000_000, 1_004_321, 1_301_029, 2_000_000, 3_000_000, 3_000_000]
    assert demand_price(1, 1) == 1 and demand_price(0, 500) == 0
    assert isinstance(demand_price(10**15, 12_345), int)


def test_fee_is_rounded_down_and_entries_are_integers():
    assert platform_fee(999, 2000) == 199 and platform_fee(0, 2000) == 0
    now = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    draft = Access("acc_x", "tnt_b", "usr_b", None, "tnt_p", "dset_x", "obj_x", None, None, "per_retrieval", "premium", 0, 0,
                   "USD", period_of(now), now)
    charged, entries = pricer(1_234_567, 2000)(draft, FRESH)
    assert charged.amount_micros == 1_234_567 and charged.fee_micros == 246_913
    assert [(e.kind, e.amount_micros, e.period) for e in entries] == [("charge", 1_234_567, "2026-11"), ("fee", 246_913, "2026-11")]
    owner = Access(**{**draft.__dict__, "buyer_tenant_id": "tnt_p"})
    assert pricer(1_234_567, 2000)(owner, FRESH)[0].amount_micros == 0 and ledger_entries(owner) == []
