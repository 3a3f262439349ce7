"""The review clock: sleeps until the next review deadline kept in the store, then has
each dataset's actor expire what is due.

Deadlines live in the store, never only in memory, so a restart (even after ``kill -9``)
expires whatever became overdue while the service was down on its first pass. A newly
staged object wakes the clock, in case its deadline is the earliest.

Where several processes share the store, one of them runs the clock (it holds the
``review-clock`` lease; the others wait to take over), and it re-reads the store at least
every ``max_sleep`` seconds, since objects staged by other processes do not wake it.

A wake-up names the new deadline, and is ignored when the clock will wake at or before it
anyway (it re-reads the store then): a staged object's deadline is almost always the
latest, so confirmations do not each cost the clock a pass over the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
import trio

from engine.actors.leases import Leases
from engine.actors.supervisor import Supervisor
from engine.errors import EngineError
from engine.review import ExpireDue
from engine.store.base import Store

log = structlog.get_logger(__name__)

RETRY_SECONDS = 5.0


class ReviewClock:
    def __init__(
        self, store: Store, actors: Supervisor, now: Callable[[], datetime], leases: Leases | None = None, max_sleep: float = math.inf
    ) -> None:
        self.store = store
        self.actors = actors
        self.now = now
        self.leases = leases
        self.max_sleep = max_sleep
        self._wake = trio.Event()
        self._wakes_at: datetime | None = None  # None: reading the store, or sleeping with no deadline

    def wake(self, deadline: datetime | None = None) -> None:
        """Re-read the store now, unless the clock already sleeps until ``deadline`` or earlier."""
        if deadline is not None and self._wakes_at is not None and deadline >= self._wakes_at:
            return
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        structlog.contextvars.clear_contextvars()
        task_status.started()
        if self.leases is None:
            await self._tick_forever()
        while self.leases is not None:
            async with self.leases.hold("review-clock", wait=True):
                log.info("review_clock_leading")
                await self._tick_forever()

    async def _tick_forever(self) -> None:
        while True:
            wake = self._wake = trio.Event()  # before reading the store: no wake-up is lost
            self._wakes_at = None
            try:
                await self._expire_due()
                deadline = await self.store.next_review_deadline()
            except EngineError:
                log.exception("review_clock_failed")
                deadline = None
                await trio.sleep(RETRY_SECONDS)
                continue
            delay = math.inf if deadline is None else max((deadline - self.now()).total_seconds(), 0.0)
            delay = min(delay, self.max_sleep)
            if delay > 0:
                self._wakes_at = None if math.isinf(delay) else self.now() + timedelta(seconds=delay)
                with trio.move_on_after(delay):
                    await wake.wait()

    async def _expire_due(self) -> None:
        while True:
            due = await self.store.datasets_with_due_reviews(self.now())
            if not due:
                return
            progressed = False
            for dataset_id in due:
                try:
                    progressed |= await self.actors.ask(dataset_id, ExpireDue(dataset_id)) > 0
                except EngineError as exc:
                    log.warning("review_expiry_failed", dataset_id=dataset_id, error=exc.message)
            if not progressed:
                await trio.sleep(RETRY_SECONDS)  # a failing dataset must not spin the clock
