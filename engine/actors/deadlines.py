"""A clock over deadlines kept in the store: what the review clock
(engine/actors/review_clock.py) and the settlement clock (engine/market/settlement.py)
share.

The clock runs passes: each does whatever is due now and answers the next deadline the
store holds; between passes it sleeps until that deadline, or until woken. Deadlines live
in the store, never only in memory, so a restart (even after ``kill -9``) does on its first
pass whatever fell due while the service was down.

Where several processes share the store, one of them runs the clock (it holds the clock's
lease; the others wait to take over), and it re-reads the store at least every
``max_sleep`` seconds, since deadlines other processes write do not wake it.

A wake-up names the new deadline, and is ignored when the clock will wake at or before it
anyway (it re-reads the store then): a new deadline is almost always the latest, so most
writes do not each cost the clock a pass over the store.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
import trio

from engine.actors.leases import Leases
from engine.errors import EngineError

log = structlog.get_logger(__name__)

RETRY_SECONDS = 5.0

T = TypeVar("T")


class DeadlineClock:
    """Subclasses name the clock (``name``, also its lease) and implement :meth:`step`."""

    name = "deadline-clock"

    def __init__(self, now: Callable[[], datetime], leases: Leases | None = None, max_sleep: float = math.inf) -> None:
        self.now = now
        self.leases = leases
        self.max_sleep = max_sleep
        self._wake = trio.Event()
        self._wakes_at: datetime | None = None  # None: reading the store, or sleeping with no deadline

    async def step(self) -> datetime | None:
        """Do what is due now; return the next deadline (None: none is kept)."""
        raise NotImplementedError

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
            async with self.leases.hold(self.name, wait=True):
                log.info("clock_leading", clock=self.name)
                await self._tick_forever()

    async def _tick_forever(self) -> None:
        while True:
            wake = self._wake = trio.Event()  # before reading the store: no wake-up is lost
            self._wakes_at = None
            try:
                deadline = await self.step()
            except EngineError:
                log.exception("clock_failed", clock=self.name)
                await trio.sleep(RETRY_SECONDS)
                continue
            delay = math.inf if deadline is None else max((deadline - self.now()).total_seconds(), 0.0)
            delay = min(delay, self.max_sleep)
            if delay > 0:
                self._wakes_at = None if math.isinf(delay) else self.now() + timedelta(seconds=delay)
                with trio.move_on_after(delay):
                    await wake.wait()


async def drain(due: Callable[[], Awaitable[Sequence[T]]], act: Callable[[T], Awaitable[bool]]) -> int:
    """Act on each thing ``due()`` lists until it lists none; return how many acts made
    progress. A round where none did (another process holds them, or they fail) waits
    ``RETRY_SECONDS`` before the next, so the clock never spins."""
    done = 0
    while things := await due():
        progressed = 0
        for thing in things:
            progressed += await act(thing)
        done += progressed
        if not progressed:
            await trio.sleep(RETRY_SECONDS)
    return done
