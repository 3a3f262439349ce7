"""An approximate nearest-neighbour index (usearch HNSW, int8) beside the exact vector cache.

The store's float32 vectors are the source of truth; :class:`engine.market.vectors.VectorCache`
keeps them quantised in memory and scans them exactly. Past ``search.ann_min_chunks``
chunks it also keeps this HNSW graph (usearch ``Index``, cosine over the same int8 rows),
a cache of a cache: built in a worker thread by :meth:`AnnIndex.run` from the rows the
vector cache hands over, kept in step as objects are indexed or removed (additions are
queued and inserted in batches, removals marked at once), and simply rebuilt (by dropping
it) when a process restarts or when more than a quarter of its entries are removed ones.
A search asks it only when it holds every row of the cache (no additions waiting); until
then the exact scan answers, so results are never missing a freshly indexed chunk.

What it changes: a search over a large scope walks ~``expansion_search`` graph nodes
instead of comparing the query with every chunk. What it costs: an insert is ~1 ms of a
core (a 200,000-chunk corpus takes minutes of one worker thread to build, at start-up or
when first crossing the threshold), the graph and its own copy of the int8 rows (~700 bytes
a chunk), and recall below 1: the exact rescoring of the candidates (float32 from the
store) keeps scores exact, but a true neighbour the graph search missed is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import structlog
import trio
from usearch.index import Index, MetricKind

log = structlog.get_logger(__name__)

# recall@10 (after the exact rescoring of 36 candidates) on real MiniLM embeddings of
# 20,000 generated chunks, 1–2-word queries (bench/README.md, "Search"): M = 16, 64/128
# gave 0.64; 16, 128/512 0.91; 32, 256/512 0.95; 32, 256/1024 0.98 (~5 ms a search there)
CONNECTIVITY = 32
EXPANSION_ADD = 256
EXPANSION_SEARCH = 1024
BATCH = 2048


Batch = tuple[np.ndarray, np.ndarray]  # (chunk ids, int8 rows), copies


class AnnIndex:
    """The HNSW graph; every mutation runs in :meth:`run`'s worker thread, one at a time.

    The vector cache owns the rows: :meth:`run` pulls copies of them a batch at a time
    through ``next_batch`` (so building never holds a second copy of the whole matrix) and
    the cache says what it removed through :meth:`remove`."""

    def __init__(self, dimensions: int, next_batch: Callable[[int], Batch | None]) -> None:
        self._dimensions = dimensions
        self._next_batch = next_batch
        self._index: Index | None = None
        self._removed: list[np.ndarray] = []
        self._dead = 0
        self._wake = trio.Event()
        self._behind = False  # rows wait to be inserted

    @property
    def ready(self) -> bool:
        """Whether the graph holds every row of the cache (searches may use it)."""
        return self._index is not None and not self._behind

    def more(self) -> None:
        """The cache has rows the graph lacks."""
        self._behind = True
        self._wake.set()

    def remove(self, ids: np.ndarray) -> None:
        self._removed.append(ids.astype(np.uint64))
        self._wake.set()

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """Keys of about the ``count`` nearest rows (thread-safe beside insertion)."""
        index = self._index
        if index is None:
            return np.zeros(0, dtype=np.int64)
        found = index.search(query, count, threads=1)
        keys = np.asarray(found.keys, dtype=np.int64)
        return keys[keys >= 0]

    def nbytes(self) -> int:
        return int(self._index.memory_usage) if self._index is not None else 0

    def _new(self) -> Index:
        return Index(ndim=self._dimensions, metric=MetricKind.Cos, dtype="i8", connectivity=CONNECTIVITY,
                     expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply queued insertions and removals in a worker thread until cancelled."""
        task_status.started()
        limiter = trio.CapacityLimiter(1)
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._index is not None and self.dead_fraction > 0.25:
                self._index, self._dead, self._removed, self._behind = None, 0, [], True  # rebuilt from the cache
            if self._index is None:
                self._index = await trio.to_thread.run_sync(self._new, limiter=limiter)
            started, inserted = time.monotonic(), 0
            while True:
                if self._removed:
                    removed, self._removed = np.concatenate(self._removed), []
                    self._dead += int(await trio.to_thread.run_sync(self._drop, removed, limiter=limiter))
                    continue
                self._behind = False  # set again by the cache if rows arrive while inserting
                batch = self._next_batch(BATCH)
                if batch is None:
                    break
                self._behind = True
                await trio.to_thread.run_sync(self._insert, *batch, limiter=limiter)
                inserted += len(batch[0])
            if inserted:
                log.info("ann_updated", inserted=inserted, seconds=round(time.monotonic() - started, 2), size=len(self._index),
                         ready=self.ready)

    def _insert(self, ids: np.ndarray, rows: np.ndarray) -> None:
        assert self._index is not None
        present = self._index.contains(ids)
        if np.any(present):  # re-indexed: the graph keeps one entry per key
            self._index.remove(ids[present])
        # a backlog (the first build) takes both cores; searches meanwhile scan exactly
        self._index.add(ids, rows, threads=2 if len(ids) >= BATCH else 1)

    def _drop(self, ids: np.ndarray) -> int:
        assert self._index is not None
        present = ids[self._index.contains(ids)]
        if len(present):
            self._index.remove(present)
        return len(present)

    @property
    def dead_fraction(self) -> float:
        size = len(self._index) if self._index is not None else 0
        return self._dead / max(1, size + self._dead)
