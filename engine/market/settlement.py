"""The settlement clock: sleeps until the next statement's month ends or its release falls
due (month end + hold; both kept in the store as the statement's row), then marks pending
what ended (``pending_at`` and the ``payout.pending`` event, one transaction, once per
statement) and releases what is due (only statements already marked pending).

A deadline clock like the review clock (engine/actors/deadlines.py): deadlines live in the
store, so a restart, even after ``kill -9``, does on its first pass whatever fell due while
the service was down; a release is one store transaction (its row, the entries it pays,
frozen amounts), so a crash mid-release leaves nothing half-paid. Where several processes
share the store, one of them runs the clock (lease ``payout-clock``), re-reading the store
at least every ``billing.settle_scan_seconds``; and each release takes its statement's
row ``FOR UPDATE SKIP LOCKED`` and checks it is still unreleased, so even two clocks at
once (a lease lost mid-pass) release a statement exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from engine import failpoints
from engine.actors.deadlines import DeadlineClock, drain
from engine.actors.leases import Leases
from engine.store.base import Store
from engine.store.money import month_bounds

log = structlog.get_logger(__name__)


class SettlementClock(DeadlineClock):
    name = "payout-clock"

    def __init__(
        self,
        store: Store,
        hold_seconds: int,
        now: Callable[[], datetime],
        leases: Leases | None = None,
        max_sleep: float = math.inf,
    ) -> None:
        super().__init__(now, leases, max_sleep)
        self.store = store
        self.hold = timedelta(seconds=hold_seconds)
        self.released = 0  # statements this process released (for logs and tests)

    def wake_for(self, period: str) -> None:
        """A statement of ``period`` exists (a charge was made in it): wake if its month ends sooner."""
        self.wake(month_bounds(period)[1])

    async def step(self) -> datetime | None:
        await self.settle_due()
        ends, ended = await self.store.next_settlement()
        return min((d for d in (ends, ended and ended + self.hold) if d is not None), default=None)

    async def settle_due(self) -> int:
        """Mark pending every statement whose month ended, then release every one due now
        (oldest first per provider); return how many were released."""
        for p in await self.store.mark_pending(self.now(), self.hold):
            log.info(
                "payout_pending", payout_id=p.id, provider_tenant_id=p.provider_tenant_id, period=p.period, currency=p.currency
            )
        return await drain(lambda: self.store.due_payouts(self.now() - self.hold), self._release)

    async def _release(self, payout_id: str) -> bool:
        """Release one statement; False when another process holds it (drain lets it finish)."""
        failpoints.hit("settlement.before_release")
        released = await self.store.settle_payout(payout_id, self.now())
        if released is None:
            return False
        self.released += 1
        failpoints.hit("settlement.after_release")
        log.info(
            "payout_released",
            payout_id=released.id,
            provider_tenant_id=released.provider_tenant_id,
            period=released.period,
            currency=released.currency,
            earnings_micros=released.earnings_micros,
            held_micros=released.held_micros,
        )
        return True
