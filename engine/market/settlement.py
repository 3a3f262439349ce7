"""The settlement clock: sleeps until the next statement's month ends or its release falls
due (month end + hold; both kept in the store as the statement's row), then marks pending
what ended (``pending_at`` and the ``payout.pending`` event, one transaction, once per
statement) and releases what is due (only statements already marked pending).

Like the review clock (engine/actors/review_clock.py): deadlines live in the store, so a
restart, even after ``kill -9``, releases on its first pass whatever fell due while the
service was down; a release is one store transaction (its row, the entries it pays,
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
import trio

from engine import failpoints
from engine.actors.leases import Leases
from engine.errors import EngineError
from engine.store.base import Store
from engine.store.money import month_bounds

log = structlog.get_logger(__name__)

RETRY_SECONDS = 5.0


class SettlementClock:
    def __init__(self, store: Store, hold_seconds: int, now: Callable[[], datetime], leases: Leases | None = None,
                 max_sleep: float = math.inf) -> None:
        self.store = store
        self.hold = timedelta(seconds=hold_seconds)
        self.now = now
        self.leases = leases
        self.max_sleep = max_sleep
        self._wake = trio.Event()
        self._wakes_at: datetime | None = None
        self.released = 0  # statements this process released (for logs and tests)

    def wake(self, deadline: datetime | None = None) -> None:
        """Re-read the store now, unless the clock already sleeps until ``deadline`` or earlier."""
        if deadline is not None and self._wakes_at is not None and deadline >= self._wakes_at:
            return
        self._wake.set()

    def wake_for(self, period: str) -> None:
        """A statement of ``period`` exists (a charge was made in it): wake if its month ends sooner."""
        self.wake(month_bounds(period)[1])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        structlog.contextvars.clear_contextvars()
        task_status.started()
        if self.leases is None:
            await self._tick_forever()
        while self.leases is not None:
            async with self.leases.hold("payout-clock", wait=True):
                log.info("settlement_clock_leading")
                await self._tick_forever()

    async def _tick_forever(self) -> None:
        while True:
            wake = self._wake = trio.Event()  # before reading the store: no wake-up is lost
            self._wakes_at = None
            try:
                await self.settle_due()
                ends, ended = await self.store.next_settlement()
            except EngineError:
                log.exception("settlement_failed")
                await trio.sleep(RETRY_SECONDS)
                continue
            deadline = min((d for d in (ends, ended and ended + self.hold) if d is not None), default=None)
            delay = math.inf if deadline is None else max((deadline - self.now()).total_seconds(), 0.0)
            delay = min(delay, self.max_sleep)
            if delay > 0:
                self._wakes_at = None if math.isinf(delay) else self.now() + timedelta(seconds=delay)
                with trio.move_on_after(delay):
                    await wake.wait()

    async def settle_due(self) -> int:
        """Mark pending every statement whose month ended, then release every one due now
        (oldest first per provider); return how many were released."""
        for p in await self.store.mark_pending(self.now(), self.hold):
            log.info("payout_pending", payout_id=p.id, provider_tenant_id=p.provider_tenant_id, period=p.period, currency=p.currency)
        done = 0
        while True:
            due = await self.store.due_payouts(self.now() - self.hold)
            if not due:
                return done
            progressed = False
            for payout_id in due:
                failpoints.hit("settlement.before_release")
                released = await self.store.settle_payout(payout_id, self.now())
                if released is not None:
                    progressed = True
                    done += 1
                    self.released += 1
                    failpoints.hit("settlement.after_release")
                    log.info("payout_released", payout_id=released.id, provider_tenant_id=released.provider_tenant_id,
                             period=released.period, currency=released.currency, earnings_micros=released.earnings_micros,
                             held_micros=released.held_micros)
            if not progressed:
                await trio.sleep(RETRY_SECONDS)  # another process holds them: let it finish
