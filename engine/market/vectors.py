"""The in-memory vector cache: every indexed chunk's embedding, int8, searched exactly.

The store holds the vectors (float32, the source of truth); this cache keeps each one
quantised to int8 with its own scale (cosine is scale-free, so nothing is lost to the
scale, only to rounding), 384 bytes a chunk: 77 MiB at 200,000 chunks instead of 307.
A search compares the query with every chunk the caller may see (usearch's exact search,
SIMD int8 kernels), then rescores the best candidates with their float32 vectors from the
store, so the scores returned are exact cosines; only the order of near-ties past the
candidate margin can differ from a float32 scan.

It follows the store's ``search_log`` (objects whose index entries changed): before each
search it re-reads the objects logged since it last looked and replaces their rows, so a
chunk indexed or removed by any engine process is seen by the next search. Re-reading an
object is idempotent; on PostgreSQL, where log numbers can commit out of order, it reads
again a margin of entries it has already seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import trio
from usearch.index import MetricKind
from usearch.index import search as usearch_search

from engine.store.base import Store
from engine.store.search import DATASET_SHIFT

DIMENSIONS = 384
LOAD_PAGE = 4096
RESCORE_MARGIN = 2  # float32 rescoring of k × margin + 16 int8 candidates
PG_LOG_OVERLAP = 256


def quantize(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled by its own largest magnitude to int8 (−127…127)."""
    scale = np.abs(vectors).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    return np.clip(np.rint(vectors / scale * 127.0), -127, 127).astype(np.int8)


class VectorCache:
    def __init__(self, store: Store, limiter: trio.CapacityLimiter | None = None) -> None:
        self.store = store
        self._ids = np.zeros(0, dtype=np.int64)
        self._mat = np.zeros((0, DIMENSIONS), dtype=np.int8)
        self._count = 0
        self._row_of: dict[int, int] = {}
        self._rows_of_object: dict[str, list[int]] = {}
        self._object_of_row: list[str] = []
        self._seq = 0
        self._loaded = False
        self._lock = trio.Lock()
        self._limiter = limiter or trio.CapacityLimiter(2)
        self._overlap = PG_LOG_OVERLAP if getattr(store, "shared", False) else 0

    @property
    def size(self) -> int:
        return self._count

    def nbytes(self) -> int:
        return int(self._mat.nbytes + self._ids.nbytes)

    # -- following the store ------------------------------------------------------------
    async def sync(self) -> None:
        """Load everything on first use, then apply what the log says changed."""
        async with self._lock:
            if not self._loaded:
                await self._load()
                return
            head = await self.store.index_log_head()
            if head <= self._seq:
                return
            while True:
                changes = await self.store.index_changes(max(0, self._seq - self._overlap))
                fresh = [c for c in changes if c[0] > self._seq]
                if not fresh:
                    return
                objects = list(dict.fromkeys(object_id for _, object_id in changes))
                self._apply(await self.store.object_vectors(objects))
                self._seq = fresh[-1][0]
                if len(changes) < 10_000:
                    return

    async def _load(self) -> None:
        self._seq = await self.store.index_log_head()
        after = -1
        while True:
            page = await self.store.vector_page(after, LOAD_PAGE)
            if not page:
                break
            ids = np.fromiter((p[0] for p in page), dtype=np.int64, count=len(page))
            floats = np.frombuffer(b"".join(p[2] for p in page), dtype=np.float32).reshape(len(page), DIMENSIONS)
            self._append(ids, quantize(floats), [p[1] for p in page])
            after = int(ids[-1])
        self._loaded = True
        # what changed while loading is applied now (re-reading an object is harmless)
        changes = await self.store.index_changes(max(0, self._seq - self._overlap))
        if changes:
            self._apply(await self.store.object_vectors(list(dict.fromkeys(o for _, o in changes))))
            self._seq = max(self._seq, changes[-1][0])

    def _reserve(self, extra: int) -> None:
        need = self._count + extra
        if need <= len(self._ids):
            return
        capacity = max(need, int(len(self._ids) * 1.5) + 1024)
        ids = np.zeros(capacity, dtype=np.int64)
        ids[: self._count] = self._ids[: self._count]
        mat = np.zeros((capacity, DIMENSIONS), dtype=np.int8)
        mat[: self._count] = self._mat[: self._count]
        self._ids, self._mat = ids, mat

    def _append(self, ids: np.ndarray, rows: np.ndarray, objects: Sequence[str]) -> None:
        self._reserve(len(ids))
        start = self._count
        self._ids[start: start + len(ids)] = ids
        self._mat[start: start + len(ids)] = rows
        for offset, (chunk_id, object_id) in enumerate(zip(ids.tolist(), objects, strict=True)):
            self._row_of[chunk_id] = start + offset
            self._rows_of_object.setdefault(object_id, []).append(start + offset)
            self._object_of_row.append(object_id)
        self._count += len(ids)

    def _remove_object(self, object_id: str) -> None:
        rows = sorted(self._rows_of_object.pop(object_id, []), reverse=True)
        for row in rows:  # swap the last row into the hole
            last = self._count - 1
            del self._row_of[int(self._ids[row])]
            if row != last:
                moved_id, moved_object = int(self._ids[last]), self._object_of_row[last]
                self._ids[row] = moved_id
                self._mat[row] = self._mat[last]
                self._object_of_row[row] = moved_object
                self._row_of[moved_id] = row
                owner_rows = self._rows_of_object[moved_object]
                owner_rows[owner_rows.index(last)] = row
            self._object_of_row.pop()
            self._count -= 1

    def _apply(self, current: dict[str, list[tuple[int, bytes]]]) -> None:
        for object_id, vectors in current.items():
            self._remove_object(object_id)
            if vectors:
                ids = np.asarray([v[0] for v in vectors], dtype=np.int64)
                floats = np.frombuffer(b"".join(v[1] for v in vectors), dtype=np.float32).reshape(len(vectors), DIMENSIONS)
                self._append(ids, quantize(floats), [object_id] * len(vectors))

    # -- searching --------------------------------------------------------------------------
    def _candidates(self, query: np.ndarray, seqs: np.ndarray, include: set[int] | None, exclude: set[int], k: int) -> list[int]:
        n = self._count
        ids = self._ids[:n]
        mask = np.isin(ids >> DATASET_SHIFT, seqs)
        if include is not None:
            mask &= np.isin(ids, np.fromiter(include, dtype=np.int64, count=len(include)))
        if exclude:
            mask &= ~np.isin(ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return []
        matrix = self._mat[:n] if len(rows) == n else self._mat[rows]
        found = usearch_search(matrix, quantize(query[None, :])[0], min(k, len(rows)), MetricKind.Cos, exact=True, threads=1)
        keys = np.asarray(found.keys, dtype=np.int64)
        keys = keys[keys >= 0]
        picked = keys if len(rows) == n else rows[keys]
        return [int(x) for x in ids[picked]]

    async def search(
        self, query: np.ndarray, dataset_seqs: Sequence[int], include: set[int] | None, exclude: set[int], k: int
    ) -> list[tuple[int, float]]:
        """``(chunk id, cosine)`` of the ``k`` chunks nearest ``query`` among the datasets
        ``dataset_seqs``, within ``include`` (when given) and outside ``exclude``."""
        await self.sync()
        if self._count == 0 or k <= 0 or not dataset_seqs or (include is not None and not include):
            return []
        seqs = np.asarray(sorted(dataset_seqs), dtype=np.int64)
        candidates = await trio.to_thread.run_sync(
            self._candidates, query, seqs, include, exclude, k * RESCORE_MARGIN + 16, limiter=self._limiter
        )
        if not candidates:
            return []
        exact = await self.store.vectors_for(candidates)
        scored = []
        for chunk_id, blob in exact.items():
            cosine = float(np.dot(np.frombuffer(blob, dtype=np.float32), query))
            if math.isfinite(cosine):
                scored.append((chunk_id, cosine))
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored[:k]
