"""The money invariants over months of traffic (API.md "Money records"): many buyers, keys
and providers, charges, disputes refunded and rejected, monthly settlements. Time is a
:class:`SteppedClock` the test advances a day at a time, running the settlement clock's
step (``settle_due``) after each, so it takes the same few seconds on either store. At
every check: Σ buyer spend = Σ provider gross = Σ charges −
Σ refunds; each provider's earnings = gross − fees; every released entry is in exactly
one statement and the released statements add up to the entries they paid; no float."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from tests.actors.conftest import SteppedClock, admin, open_engine, tenant
from tests.actors.test_settlement import _statements
from tests.http.money_helpers import charged_access
from tests.rawdb import query


def _no_float(value: Any) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _no_float(v)
    elif isinstance(value, list):
        for v in value:
            _no_float(v)
    assert not isinstance(value, float)


async def _check(svc, buyers, providers) -> dict[str, int]:
    totals = await svc.store.money_totals()
    net = totals.get("charge", 0) + totals.get("refund", 0)
    spend = 0
    for b in buyers:
        for group_by in ("day", "dataset", "api_key"):
            view = await svc.activity.spend(b, group_by, "USD", None, None)
            _no_float(view)
            assert sum(g["amount_micros"] for g in view["groups"]) == view["total_micros"]
        spend += view["net_micros"]
    gross = 0
    for p in providers:
        revenue = (await svc.analytics.provider(p, None, None, None, "USD"))["revenue"]
        _no_float(revenue)
        assert revenue["earnings_micros"] == revenue["gross_micros"] - revenue["fee_micros"]
        assert sum(d["gross_micros"] for d in revenue["by_dataset"]) == revenue["gross_micros"]
        assert sum(d["earnings_micros"] for d in revenue["by_day"]) == revenue["earnings_micros"]
        gross += revenue["gross_micros"]
        statements = await _statements(svc, p)
        for s in statements:
            for k, v in s.items():
                assert not k.endswith("_micros") or isinstance(v, int), (k, v)
            assert s["earnings_micros"] == s["gross_micros"] - s["fee_micros"]
        # all statements together (released + previews) pay all but what is held now (each held
        # entry is previewed in exactly one unreleased statement; a released one only recalls it)
        held = sum(s["held_micros"] for s in statements if s["status"] != "released")
        assert sum(s["gross_micros"] for s in statements) + held == revenue["gross_micros"]
    assert spend == gross == net
    cfg = svc.cfg
    assert query(cfg, "SELECT count(*) FROM payout_entries") == query(cfg, "SELECT count(DISTINCT ledger_entry_id) FROM payout_entries")
    for payout_id, gross_micros, fee_micros in query(cfg, "SELECT id, gross_micros, fee_micros FROM payouts WHERE released_at IS NOT NULL"):
        rows = dict(query(cfg, "SELECT e.kind, sum(e.amount_micros) FROM ledger_entries e JOIN payout_entries x"
                               " ON x.ledger_entry_id = e.id WHERE x.payout_id = ? GROUP BY 1", payout_id))
        assert gross_micros == int(rows.get("charge", 0)) + int(rows.get("refund", 0))
        assert fee_micros == int(rows.get("fee", 0)) + int(rows.get("fee_refund", 0))
    return totals


async def test_money_adds_up_across_tenants_keys_refunds_and_settlements(tmp_path):
    rng = random.Random(19)
    clock = SteppedClock()
    async with open_engine(tmp_path / "d", now=clock) as svc:
        buyers = [await tenant(svc, f"buyer{i}") for i in range(5)]
        providers = [await tenant(svc, f"provider{i}") for i in range(4)]
        keys = {b.tenant_id: [None, f"key_{i}a", f"key_{i}b"] for i, b in enumerate(buyers)}
        charged: list[Any] = []
        disputes: list[str] = []
        for day in range(75):
            for _ in range(rng.randint(3, 9)):
                b, p = rng.choice(buyers), rng.choice(providers)
                amount = rng.choice([0, 1, 7, 999, 1_000_000, rng.randint(1, 10**9)])
                a = await charged_access(svc.store, b.tenant_id, p.tenant_id, f"dset_{p.tenant_id[-4:]}{rng.randint(0, 2)}", amount,
                                         svc.now(), rng.choice(keys[b.tenant_id]))
                if amount:
                    charged.append((b, a))
            if charged and rng.random() < 0.5:
                b, a = rng.choice(charged[-40:])
                try:
                    disputes.append((await svc.disputes.open(b, a.id, "bad")).id)
                except Exception as exc:  # already disputed, or its window closed
                    assert type(exc).__name__ in ("AlreadyDisputed", "NotDisputable"), exc
            if disputes and rng.random() < 0.4:
                await svc.disputes.resolve(admin(), disputes.pop(rng.randrange(len(disputes))), rng.choice(["refund", "reject"]))
            if day % 20 == 0:
                await _check(svc, buyers, providers)
            clock.advance(86400)
            await svc.settlement.settle_due()
        await _check(svc, buyers, providers)
        for dispute_id in disputes:
            await svc.disputes.resolve(admin(), dispute_id, rng.choice(["refund", "reject"]))
        clock.advance((datetime(2026, 9, 16, tzinfo=UTC) - svc.now()).total_seconds())
        assert await svc.settlement.settle_due() > 0
        totals = await _check(svc, buyers, providers)
        assert totals.get("refund", 0) < 0  # refunds happened
        for kind in ("charge", "fee", "refund", "fee_refund"):
            assert totals[f"released:{kind}"] == totals[kind]  # everything paid out, once
        released = 0
        for p in providers:
            released += sum(s["earnings_micros"] for s in await _statements(svc, p) if s["status"] == "released")
        assert released == totals["charge"] + totals["refund"] - totals["fee"] - totals["fee_refund"]
