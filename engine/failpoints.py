"""Failure injection for crash tests: ``IPTO_FAILPOINTS=name[,name…]`` makes the process
kill itself (SIGKILL, as ``kill -9`` would) when it reaches a named point. Unset in
production, where :func:`hit` is one set lookup."""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(filter(None, os.environ.get("IPTO_FAILPOINTS", "").split(",")))


def hit(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
