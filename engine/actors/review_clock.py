"""The review clock: sleeps until the next review deadline kept in the store, then has
each dataset's actor expire what is due.

A deadline clock (engine/actors/deadlines.py: deadlines in the store, one leading process,
wake-ups that name their deadline). A newly staged object wakes it, in case its deadline is
the earliest; where several processes share the store, the leader (lease ``review-clock``)
re-reads the store at least every ``max_sleep`` seconds, since objects staged by other
processes do not wake it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

import structlog

from engine.actors.deadlines import DeadlineClock, drain
from engine.actors.leases import Leases
from engine.actors.supervisor import Supervisor
from engine.errors import EngineError
from engine.review import ExpireDue
from engine.store.base import Store

log = structlog.get_logger(__name__)


class ReviewClock(DeadlineClock):
    name = "review-clock"

    def __init__(
        self,
        store: Store,
        actors: Supervisor,
        now: Callable[[], datetime],
        leases: Leases | None = None,
        max_sleep: float = math.inf,
    ) -> None:
        super().__init__(now, leases, max_sleep)
        self.store = store
        self.actors = actors

    async def step(self) -> datetime | None:
        await drain(lambda: self.store.datasets_with_due_reviews(self.now()), self._expire)
        return await self.store.next_review_deadline()

    async def _expire(self, dataset_id: str) -> bool:
        try:
            return await self.actors.ask(dataset_id, ExpireDue(dataset_id)) > 0
        except EngineError as exc:  # a failing dataset must not stop the others (nor spin the clock: drain waits)
            log.warning("review_expiry_failed", dataset_id=dataset_id, error=exc.message)
            return False
