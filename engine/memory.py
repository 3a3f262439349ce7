"""glibc malloc settings that keep the engine's resident memory bounded.

* **Arenas.** glibc gives each thread that allocates concurrently an arena of its own, up
  to eight per core. The engine's worker threads (SQLite readers, embeddings, vector scans)
  each allocate a little, then free it; every arena keeps its freed pages, so resident
  memory creeps up under concurrent load. One arena per core (at least two) bounds that:
  bench/README.md, "Ninth run", measured 453 → 414 MiB for the engine under the search
  benchmark, and vector searches no slower. ``MALLOC_ARENA_MAX`` set by the operator wins;
  the value is also left in the environment, so the processes ``ipto serve`` starts (HTTP
  workers, the delivery process, import workers) read it when their allocator starts.
* **Trimming.** :func:`release_free_memory` hands the heap's free pages back to the system
  after a large transient allocation (the vector cache's first load).

Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def cores() -> int:
    """The cores this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def limit_malloc_arenas() -> int:
    """Hold this process (and the processes it starts) to ``MALLOC_ARENA_MAX`` arenas, one
    per core unless the environment says otherwise; the limit applied."""
    default = str(max(2, cores()))
    value = os.environ.setdefault("MALLOC_ARENA_MAX", default)
    try:
        arenas = max(1, int(value))
    except ValueError:
        arenas = int(default)
    libc = _libc()
    if libc is not None:
        try:
            libc.mallopt(M_ARENA_MAX, arenas)
        except AttributeError:
            pass
    return arenas


def release_free_memory() -> None:
    """Give the heap's free pages back to the system."""
    libc = _libc()
    if libc is not None:
        try:
            libc.malloc_trim(0)
        except AttributeError:
            pass
