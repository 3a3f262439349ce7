"""The C allocator's settings for a serving process (glibc ``mallopt``), set once at start.

Every upload's socket reads are buffers of up to 512 KiB. glibc serves blocks that large
with ``mmap`` and gives them back on free, but only until the first such block is freed:
then it raises its mmap threshold (up to 32 MiB) and later large blocks come from the heap
arenas, where freed memory stays resident. With many uploads at once the process's RSS
then keeps the peak of every burst. A fixed threshold keeps large blocks on ``mmap``
(returned on free); fewer arenas (one per thread by default, up to 8 per core) keep the
stream and worker threads' small allocations from pinning memory in arenas of their own.
"""

from __future__ import annotations

import contextlib
import ctypes

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, made fixed
ARENAS = 2


def tune_allocator() -> bool:
    """Apply the settings above; False where the C library is not glibc (nothing changes)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(_M_ARENA_MAX, ARENAS))
    return False
