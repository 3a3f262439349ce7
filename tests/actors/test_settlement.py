"""Monthly settlement under autojump_clock: statements open → pending → released at month
end + hold, held disputes paid in a later statement, exactly once across restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
import trio

from engine.errors import NotDisputable
from tests.actors.conftest import START, SteppedClock, admin, open_engine, tenant
from tests.http.money_helpers import charged_access
from tests.rawdb import query

HOLD = 14 * 86400


def _until(svc, when: datetime) -> float:
    return (when - svc.now()).total_seconds()


async def _buy(svc, buyer, provider, amount):
    a = await charged_access(svc.store, buyer.tenant_id, provider.tenant_id, "dset_x", amount, svc.now())
    svc.settlement.wake_for(a.period)  # what a real access does (Accesses.on_charged)
    return a


async def _statements(svc, provider):
    page, previews = await svc.payouts.list(provider, None, None, None, 100)
    return [svc.payouts.view(p, previews) for p in page.items]


def _amounts(view):
    return tuple(view[k] for k in ("gross_micros", "fee_micros", "refunds_micros", "held_micros", "earnings_micros"))


async def test_a_month_is_released_after_the_hold_and_a_held_dispute_in_a_later_statement(tmp_path, autojump_clock):
    async with open_engine(tmp_path / "d") as svc:
        buyer, provider = await tenant(svc, "buyer"), await tenant(svc, "provider")
        await _buy(svc, buyer, provider, 1_000_000)
        a2 = await _buy(svc, buyer, provider, 300_000)
        a3 = await _buy(svc, buyer, provider, 50_000)
        a6 = await _buy(svc, buyer, provider, 10)
        d2 = await svc.disputes.open(buyer, a2.id, "held")
        d3 = await svc.disputes.open(buyer, a3.id, "refund me")
        await svc.disputes.resolve(admin(), d3.id, "refund")
        [april] = await _statements(svc, provider)
        assert april["period"] == "2026-04" and april["status"] == "open" and april["released_at"] is None
        assert april["release_at"] == "2026-05-15T00:00:00.000Z"
        assert _amounts(april) == (1_000_010, 200_002, 50_000, 300_000, 800_008)

        await trio.sleep(_until(svc, datetime(2026, 5, 2, tzinfo=UTC)))
        [april] = await _statements(svc, provider)
        assert april["status"] == "pending"
        await trio.sleep(_until(svc, datetime(2026, 5, 14, 23, 59, tzinfo=UTC)))
        await _buy(svc, buyer, provider, 7)  # May
        assert (await _statements(svc, provider))[1]["status"] == "pending"
        await trio.sleep(120)
        may, april = await _statements(svc, provider)
        assert april["status"] == "released" and april["released_at"] == "2026-05-15T00:00:00.000Z"
        assert _amounts(april) == (1_000_010, 200_002, 50_000, 300_000, 800_008)
        assert may["status"] == "open" and _amounts(may) == (7, 1, 0, 300_000, 6)  # still held: shown where it would be paid
        assert svc.settlement.released == 1

        await svc.disputes.resolve(admin(), d2.id, "reject")  # May 15: the held 300_000 goes into the next release
        may, april = await _statements(svc, provider)
        assert _amounts(may) == (300_007, 60_001, 0, 0, 240_006) and _amounts(april)[3] == 300_000
        with pytest.raises(NotDisputable):
            await svc.disputes.open(buyer, a6.id, "April is paid out")
        await trio.sleep(_until(svc, datetime(2026, 6, 15, 0, 0, 1, tzinfo=UTC)))
        may, april = await _statements(svc, provider)
        assert may["status"] == "released" and _amounts(may) == (300_007, 60_001, 0, 0, 240_006)
        totals = await svc.store.money_totals()
        for kind in ("charge", "fee", "refund", "fee_refund"):
            assert totals[f"released:{kind}"] == totals[kind]  # every entry paid, each in exactly one statement
        assert svc.settlement.released == 2


async def test_settlement_due_while_down_is_released_once_on_restart(tmp_path, autojump_clock):
    data = tmp_path / "d"
    async with open_engine(data) as svc:
        buyer, provider = await tenant(svc, "buyer"), await tenant(svc, "provider")
        await _buy(svc, buyer, provider, 5_000)
        await trio.sleep(3600)
    later = datetime(2026, 7, 1, tzinfo=UTC)  # down past the release (May 15)
    async with open_engine(data, start=later) as svc:
        await trio.sleep(1)
        [april] = await _statements(svc, provider)
        assert april["status"] == "released" and april["released_at"] == "2026-07-01T00:00:00.000Z"
        assert _amounts(april) == (5_000, 1_000, 0, 0, 4_000)
        assert svc.settlement.released == 1
    async with open_engine(data, start=later) as svc:
        await trio.sleep(1)
        assert svc.settlement.released == 0
        assert [p["payout_id"] for p in await _statements(svc, provider)] == [april["payout_id"]]
        assert await svc.settlement.settle_due() == 0
    assert START.month == 4


def _payout_events(svc, tenant_id):
    return [(t, orjson.loads(bytes(b))["data"]) for t, b in query(
        svc.cfg, "SELECT type, body FROM webhook_events WHERE tenant_id = ? AND type LIKE 'payout.%' ORDER BY created_at", tenant_id)]


async def test_a_month_end_marks_the_statement_pending_once_with_its_event(tmp_path):
    """``pending`` is a write at the month's end (``pending_at`` and ``payout.pending`` in
    one transaction), made once however many passes and restarts follow, before the release."""
    clock, data = SteppedClock(), tmp_path / "d"
    hooks = {"webhooks.allow_private_targets": True}
    async with open_engine(data, now=clock, **hooks) as svc:
        buyer, provider = await tenant(svc, "buyer"), await tenant(svc, "provider")
        await svc.webhooks.create(provider, "http://127.0.0.1:9/hook", ["payout.pending", "payout.released"], None)
        await _buy(svc, buyer, provider, 5_000)
        clock.advance(_until(svc, datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC)))
        assert await svc.settlement.settle_due() == 0
        assert _payout_events(svc, provider.tenant_id) == []
        assert await svc.store.next_settlement() == (datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))

        clock.advance(1)  # May 1st, 00:00: April ended
        for _ in range(3):
            assert await svc.settlement.settle_due() == 0
        [april] = await _statements(svc, provider)
        [(kind, data_)] = _payout_events(svc, provider.tenant_id)
        assert kind == "payout.pending" and data_ == {
            "payout_id": april["payout_id"], "period": "2026-04", "currency": "USD", "period_start": "2026-04-01T00:00:00.000Z",
            "period_end": "2026-05-01T00:00:00.000Z", "status": "pending", "release_at": "2026-05-15T00:00:00.000Z"}
        assert april["status"] == "pending" and april["released_at"] is None
        assert query(svc.cfg, "SELECT count(*) FROM payouts WHERE pending_at IS NOT NULL") == [(1,)]
        assert await svc.store.next_settlement() == (None, datetime(2026, 5, 1, tzinfo=UTC))  # next: its release

    async with open_engine(data, now=clock, **hooks) as svc:  # a restart announces nothing again
        assert await svc.settlement.settle_due() == 0
        assert [t for t, _ in _payout_events(svc, provider.tenant_id)] == ["payout.pending"]
        clock.advance(_until(svc, datetime(2026, 5, 15, tzinfo=UTC)))
        assert await svc.settlement.settle_due() == 1
        assert await svc.settlement.settle_due() == 0
        events = _payout_events(svc, provider.tenant_id)
        assert [t for t, _ in events] == ["payout.pending", "payout.released"]
        assert events[1][1]["payout_id"] == april["payout_id"] and events[1][1]["earnings_micros"] == 4_000
        assert _payout_events(svc, buyer.tenant_id) == []  # the buyer hears nothing of the provider's statements


async def test_a_statement_not_yet_marked_pending_is_not_released(tmp_path):
    """Down from before April's end until after its release: the first pass marks April
    pending (with its event), then releases it."""
    clock, data = SteppedClock(), tmp_path / "d"
    async with open_engine(data, now=clock, **{"webhooks.allow_private_targets": True}) as svc:
        buyer, provider = await tenant(svc, "buyer"), await tenant(svc, "provider")
        await svc.webhooks.create(provider, "http://127.0.0.1:9/hook", ["*"], None)
        await _buy(svc, buyer, provider, 5_000)
        [april] = await _statements(svc, provider)
        clock.advance(_until(svc, datetime(2026, 7, 1, tzinfo=UTC)))
        assert await svc.store.due_payouts(clock()) == []  # not marked pending yet
        assert await svc.store.settle_payout(april["payout_id"], clock()) is None
        assert await svc.settlement.settle_due() == 1
        assert sorted(t for t, _ in _payout_events(svc, provider.tenant_id)) == ["payout.pending", "payout.released"]
        assert query(svc.cfg, "SELECT count(*) FROM payouts WHERE pending_at <= released_at") == [(1,)]
