"""Where blocking work runs: on worker threads (always, in the service), or inline on the
Trio thread in deterministic tests driven by ``autojump_clock`` (a clock that jumps while
a thread works would fire timeouts that never happen in real time)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

Offload = Callable[..., Awaitable[Any]]

to_thread: Offload = trio.to_thread.run_sync


_cpu_bound_running = 0


async def cpu_bound(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a worker thread, counted as CPU-bound Python work (pipeline stages).

    While such a thread runs it holds the GIL for up to the switch interval at a time, and
    a thread that gives the GIL up inside a blocking call (every SQLite statement, an
    fsync) waits that long to get it back. Work that would otherwise run inline on the
    Trio thread (the SQLite store's quick operations) asks :func:`cpu_bound_running` and
    goes to a worker thread meanwhile, so the loop itself never queues for the GIL behind
    it statement after statement."""
    global _cpu_bound_running
    _cpu_bound_running += 1
    try:
        return await trio.to_thread.run_sync(fn, *args)
    finally:
        _cpu_bound_running -= 1


def cpu_bound_running() -> bool:
    return _cpu_bound_running > 0


async def inline(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return fn(*args)
