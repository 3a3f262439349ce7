"""The supervisor: owns the nursery every dataset actor will run in.

For now it owns no actors (they arrive with the review and pipeline work); it already
has the shape the service relies on: an async context manager that yields a handle once
ready and, on exit, stops what it owns within a deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
import trio

log = structlog.get_logger(__name__)


@dataclass
class Supervisor:
    nursery: trio.Nursery
    grace_seconds: float

    @property
    def actor_count(self) -> int:
        return 0


@contextlib.asynccontextmanager
async def open_supervisor(grace_seconds: float = 10.0) -> AsyncIterator[Supervisor]:
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(nursery, grace_seconds)
        log.info("supervisor_started")
        try:
            yield supervisor
        finally:
            nursery.cancel_scope.deadline = trio.current_time() + grace_seconds
            log.info("supervisor_stopping")
