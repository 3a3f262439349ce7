"""Putting many verified objects in place at once (batch confirmations, :mod:`engine.bulk`).

On local blobs a single confirmation renames its file into ``objects/`` and fsyncs that
directory: one fsync per object. A batch renames all of its files in one worker-thread job
and fsyncs the directory once, which makes every rename before it durable. Elsewhere (S3,
a server-side copy per object) the promotions run concurrently, a bounded number at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import trio

from engine.store.blobs.base import BlobStore, Staged
from engine.store.blobs.local import LocalBlobStore

CONCURRENCY = 16


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _promote_local(blobs: LocalBlobStore, items: Sequence[tuple[Staged, str]]) -> set[int]:
    failed: set[int] = set()
    staging = blobs.root / "staging"
    moved = False
    for position, (staged, blob_id) in enumerate(items):
        if staged.source is None:
            continue  # already in place (a confirmation interrupted after its promote)
        try:
            os.replace(staged.source, blobs.object_path(blob_id))
        except OSError:
            failed.add(position)
            continue
        moved = True
        folder = Path(staged.source).parent
        if folder.parent == staging:  # a single part: its upload's folder is empty now
            with contextlib.suppress(OSError):
                folder.rmdir()
    if moved:
        _fsync_dir(blobs.root / "objects")
    return failed


async def promote_many(blobs: BlobStore, items: Sequence[tuple[Staged, str]]) -> set[int]:
    """Promote each ``(staged, blob_id)``; the positions of those that could not be (their
    bytes vanished), the rest durable in place on return."""
    if not items:
        return set()
    if isinstance(blobs, LocalBlobStore):
        return await blobs._offload(_promote_local, blobs, items)
    failed: set[int] = set()
    slots = trio.CapacityLimiter(CONCURRENCY)

    async def one(position: int, staged: Staged, blob_id: str) -> None:
        async with slots:
            try:
                await blobs.promote(staged, blob_id)
            except Exception:  # noqa: BLE001 - that object alone fails; the store's error is logged by its caller
                failed.add(position)

    async with trio.open_nursery() as nursery:
        for position, (staged, blob_id) in enumerate(items):
            nursery.start_soon(one, position, staged, blob_id)
    return failed
