"""Per-key locks for one process, or for every process of one engine."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import trio


class KeyedLocks:
    """A ``trio.Lock`` per key, dropped when nobody holds or waits for it.

    With ``path`` (several processes of one engine), holding a key also takes a one-byte
    ``lockf`` lock in that file at an offset drawn from the key, so a PUT and a confirm of
    one upload exclude each other whichever processes serve them. POSIX record locks belong
    to the process, hence the ``trio.Lock`` first; two keys of one process meeting at one
    offset would need a 56-bit hash collision while both are held."""

    def __init__(self, path: Path | None = None) -> None:
        self._locks: dict[str, tuple[trio.Lock, int]] = {}
        self._fd = None if path is None else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (trio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                if self._fd is None:
                    yield
                else:
                    offset = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=7).digest(), "big")
                    await self._lock_processes(self._fd, offset)
                    try:
                        yield
                    finally:
                        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, offset)
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @staticmethod
    async def _lock_processes(fd: int, offset: int) -> None:
        delay = 0.001
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                return
            except OSError as exc:  # EAGAIN or EACCES: another process holds this upload
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            await trio.sleep(delay)  # rare: one upload's PUT and confirm at once in two processes
            delay = min(delay * 2, 0.05)
