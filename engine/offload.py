"""Where blocking work runs: on worker threads (always, in the service), or inline on the
Trio thread in deterministic tests driven by ``autojump_clock`` (a clock that jumps while
a thread works would fire timeouts that never happen in real time)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

Offload = Callable[..., Awaitable[Any]]

to_thread: Offload = trio.to_thread.run_sync


async def inline(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return fn(*args)
