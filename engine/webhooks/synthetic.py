"""Synthetic events, for benchmarks only (``webhooks.bench_events_per_second`` > 0).

``python -m bench webhooks`` needs a steady stream of events beside its uploads, more than
HTTP calls could make on a 2-core machine. This task writes ``dataset.updated`` events at
that rate through the real outbox (``store.emit_event``: one write transaction each, as
when a change reports itself), round-robin over the tenants that have webhooks, whether
their endpoints are enabled or not; so a run with every endpoint disabled pays the same
transactions and only the fan-out and the sending differ. Off (0) by default.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
import trio

log = structlog.get_logger(__name__)
TICK_SECONDS = 0.01
EMITTERS = 8  # concurrent writers: one durable commit each at a time, group-committed together


async def run(store: Any, rate: int, now: Callable[[], datetime]) -> None:
    structlog.contextvars.clear_contextvars()
    send, recv = trio.open_memory_channel[str](rate)
    tenants: list[str] = []

    async def refresh() -> None:
        while True:
            tenants[:] = await store.webhook_tenants()
            await trio.sleep(1.0)

    async def emitter() -> None:
        n = 0
        async for tenant in recv:
            n += 1
            try:
                await store.emit_event(tenant, "dataset.updated", {"dataset_id": "dset_synthetic", "changed": ["synthetic"], "n": n}, now())
            except Exception:
                log.exception("synthetic_event_failed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresh)
        for _ in range(EMITTERS):
            nursery.start_soon(emitter)
        owed, i, last = 0.0, 0, trio.current_time()
        while True:
            await trio.sleep(TICK_SECONDS)
            t = trio.current_time()
            owed += (t - last) * rate
            last = t
            while owed >= 1 and tenants:
                owed -= 1
                i += 1
                try:
                    send.send_nowait(tenants[i % len(tenants)])
                except trio.WouldBlock:
                    owed = 0  # the store cannot keep up: drop, the benchmark reports what was sent
                    break
