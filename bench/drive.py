"""Closed-loop load: ``concurrency`` trio tasks each repeating one operation until a deadline.

Each operation returns the latencies of its steps (e.g. initiate, PUT, confirm); the whole
operation is timed too. Errors are counted by status and code (or exception type), never
retried and never hidden. CPU of this client process and of the server is sampled over the
measured window, so a reader can tell a saturated server from a saturated client.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import trio

from bench.client import ApiError
from bench.harness import cpu_seconds

Op = Callable[[int, int], Awaitable[dict[str, float] | None]]


@dataclass
class Phase:
    ops: int
    elapsed: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds per step, "total" for the op
    errors: Counter[str] = field(default_factory=Counter)
    client_cpu: float = 0.0  # cores busy on average
    server_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.ops / self.elapsed if self.elapsed else 0.0

    def pct_ms(self, q: float, step: str = "total") -> float:
        return percentile(self.latencies.get(step, []), q) * 1000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status} {exc.code}"
    return type(exc).__name__


async def drive(op: Op, concurrency: int, seconds: float, *, warmup: float = 0.0, server_pid: int | None = None,
                max_ops: int | None = None) -> Phase:
    """Run ``op(worker, i)`` from ``concurrency`` tasks for ``seconds`` (after ``warmup``
    unmeasured seconds); with ``max_ops`` the measured window stops after that many ops."""
    phase = Phase(0, 0.0)
    lat: dict[str, list[float]] = defaultdict(list)
    started = 0

    async def worker(w: int, deadline: float, measure: bool) -> None:
        nonlocal started
        i = 0
        while time.perf_counter() < deadline:
            if measure and max_ops is not None:
                if started >= max_ops:
                    return
                started += 1
            t0 = time.perf_counter()
            try:
                steps = await op(w, i)
            except (ApiError, httpx.HTTPError, OSError) as exc:
                if measure:
                    phase.errors[describe(exc)] += 1
            else:
                if measure:
                    phase.ops += 1
                    lat["total"].append(time.perf_counter() - t0)
                    for name, value in (steps or {}).items():
                        lat[name].append(value)
            i += 1

    if warmup > 0:
        async with trio.open_nursery() as nursery:
            end = time.perf_counter() + warmup
            for w in range(concurrency):
                nursery.start_soon(worker, w, end, False)
    cpu0, srv0, t0 = time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0, time.perf_counter()
    async with trio.open_nursery() as nursery:
        end = t0 + seconds
        for w in range(concurrency):
            nursery.start_soon(worker, w, end, True)
    phase.elapsed = time.perf_counter() - t0
    phase.client_cpu = (time.process_time() - cpu0) / phase.elapsed
    phase.server_cpu = ((cpu_seconds(server_pid) - srv0) / phase.elapsed) if server_pid else float("nan")
    phase.latencies = dict(lat)
    return phase
