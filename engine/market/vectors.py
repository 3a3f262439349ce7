"""The in-memory vector cache: every indexed chunk's embedding, int8, searched exactly.

The store holds the vectors (float32, the source of truth); this cache keeps each one
quantised to int8 with its own scale (cosine is scale-free, so nothing is lost to the
scale, only to rounding), 384 bytes a chunk: 77 MiB at 200,000 chunks instead of 307.
A search compares the query with every chunk the caller may see (numkong's int8 angular
distance over the whole block, SIMD kernels, the nearest then picked with numpy; a quarter
less time per vector search than usearch's exact search at 200,000 chunks, bench/README.md
"Eleventh run"), then rescores the best candidates with their float32 vectors from the
store, so the scores returned are exact cosines; only the order of near-ties past the
candidate margin can differ from a float32 scan.

It follows the store's ``search_log`` (objects whose index entries changed): before each
search it re-reads the objects logged since it last looked and replaces their rows, so a
chunk indexed or removed by any engine process is seen by the next search. Re-reading an
object is idempotent; on PostgreSQL, where log numbers can commit out of order, it reads
again a margin of entries it has already seen.

From ``search.ann_min_chunks`` chunks on it also keeps an HNSW graph over the same rows
(:mod:`engine.market.ann`), which answers searches over large scopes once it holds every
row; the exact scan answers everything else (small scopes, ``include`` sets, the graph
still building). The query's constraints (``+``, ``AND``, ``-``/``NOT``) are checked on
candidate lists (``accept``), widened while too few pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Sequence

import numkong
import numpy as np
import structlog
import trio

from engine.market.ann import AnnIndex
from engine.memory import release_free_memory
from engine.store.base import Store
from engine.store.search import DATASET_SHIFT

log = structlog.get_logger(__name__)

DIMENSIONS = 384
LOAD_PAGE = 4096
RESCORE_MARGIN = 2  # float32 rescoring of k × margin + 16 int8 candidates
PG_LOG_OVERLAP = 256
ANN_MIN_SCOPE = 20_000  # scopes smaller than this are scanned exactly even when the graph is there
ANN_MAX_COUNT = 2048  # a graph search asked for more candidates than this: the exact scan instead
ACCEPT_ROUNDS = 3  # candidate lists of k × margin, × 4, × 16 checked against the constraints

Accept = Callable[[list[int]], Awaitable[set[int]]]


def nearest_rows(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` rows of the int8 ``matrix`` nearest the int8 ``query`` by cosine, nearest
    first (ties: the lower row first); an all-zero row has no direction: cosine 0 with any
    non-zero query (numkong's angular distance 1), as the float32 rescoring scores it."""
    distances = np.asarray(numkong.cdist(query[None, :], matrix, metric="angular")).ravel()  # float64: never NaN
    top = np.argpartition(distances, k - 1)[:k] if k < len(distances) else np.arange(len(distances))
    return top[np.lexsort((top, distances[top]))]


def quantize(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled by its own largest magnitude to int8 (−127…127)."""
    scale = np.abs(vectors).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    return np.clip(np.rint(vectors / scale * 127.0), -127, 127).astype(np.int8)


class VectorCache:
    def __init__(self, store: Store, limiter: trio.CapacityLimiter | None = None, ann_min_chunks: int = 0) -> None:
        self.store = store
        self._ann_min = ann_min_chunks  # 0: exact scans only
        self.ann: AnnIndex | None = None
        self._ann_todo: dict[int, None] = {}  # chunk ids the graph still lacks, in order
        self._ids = np.zeros(0, dtype=np.int64)
        self._mat = np.zeros((0, DIMENSIONS), dtype=np.int8)
        self._count = 0
        # each row's object as a small integer code (numpy, not a Python object per chunk:
        # ~50 MiB less at 200,000 chunks than dicts and lists of rows)
        self._obj = np.zeros(0, dtype=np.int32)
        self._codes: dict[str, int] = {}
        self._next_code = 0
        self._row_of: dict[int, int] | None = None  # chunk id → row, kept only while the graph is on
        self._per_seq: dict[int, int] = {}  # chunks per dataset seq
        self._seq = 0
        self._loaded = False
        self._lock = trio.Lock()
        self._limiter = limiter or trio.CapacityLimiter(2)
        self._overlap = PG_LOG_OVERLAP if getattr(store, "shared", False) else 0
        self._ann_started = trio.Event()

    @property
    def size(self) -> int:
        return self._count

    def nbytes(self) -> int:
        return int(self._mat.nbytes + self._ids.nbytes + self._obj.nbytes)

    # -- following the store ------------------------------------------------------------
    async def sync(self) -> None:
        """Load everything on first use, then apply what the log says changed."""
        async with self._lock:
            await self._sync_locked()
            self._follow_ann()

    async def _sync_locked(self) -> None:
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
        # sized once (+ room to grow): growing 1.5× at a time while loading held the old and
        # the new matrix at once, twice the cache at its peak
        self._reserve(int(await self.store.vector_count() * 1.05) + LOAD_PAGE)
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
        release_free_memory()  # the pages' buffers, freed, would otherwise stay in the heap
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
        obj = np.zeros(capacity, dtype=np.int32)
        obj[: self._count] = self._obj[: self._count]
        self._ids, self._mat, self._obj = ids, mat, obj

    # -- the approximate index (engine/market/ann.py) -------------------------------------
    def _follow_ann(self) -> None:
        """Start the graph once the cache is large enough (it then follows every change)."""
        if self.ann is None and self._ann_min > 0 and self._count >= self._ann_min:
            self.ann = AnnIndex(DIMENSIONS, self._ann_batch)
            self._row_of = {chunk_id: row for row, chunk_id in enumerate(self._ids[: self._count].tolist())}
            self._ann_todo = dict.fromkeys(self._ids[: self._count].tolist())
            self.ann.more()
            self._ann_started.set()

    def _ann_batch(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Copies of up to ``n`` rows the graph lacks (AnnIndex pulls them)."""
        take = list(itertools.islice(self._ann_todo, n))
        if not take:
            return None
        for chunk_id in take:
            del self._ann_todo[chunk_id]
        row_of = self._row_of
        assert row_of is not None
        rows = np.fromiter((row_of[c] for c in take), dtype=np.int64, count=len(take))
        return np.asarray(take, dtype=np.uint64), self._mat[rows].copy()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the approximate index once there is one (until cancelled): from the first
        vector search that finds the cache past ``ann_min_chunks`` (the cache loads on first
        use, so an engine that never ranks by vectors never holds either)."""
        task_status.started()
        if self._ann_min <= 0:
            return
        try:
            await self._ann_started.wait()
            assert self.ann is not None
            await self.ann.run()
        except Exception:  # the graph is a cache: without it, exact scans answer
            log.exception("ann_failed")
            self.ann, self._ann_min, self._ann_todo, self._row_of = None, 0, {}, None

    def _append(self, ids: np.ndarray, rows: np.ndarray, objects: Sequence[str]) -> None:
        if self.ann is not None:
            self._ann_todo.update(dict.fromkeys(ids.tolist()))
            self.ann.more()
        self._reserve(len(ids))
        start = self._count
        self._ids[start: start + len(ids)] = ids
        self._mat[start: start + len(ids)] = rows
        codes = self._obj[start: start + len(ids)]
        for offset, (chunk_id, object_id) in enumerate(zip(ids.tolist(), objects, strict=True)):
            seq = chunk_id >> DATASET_SHIFT
            self._per_seq[seq] = self._per_seq.get(seq, 0) + 1
            code = self._codes.get(object_id)
            if code is None:
                code = self._codes[object_id] = self._next_code
                self._next_code += 1
            codes[offset] = code
            if self._row_of is not None:
                self._row_of[chunk_id] = start + offset
        self._count += len(ids)

    def _remove_objects(self, object_ids: Sequence[str]) -> None:
        codes = [code for o in object_ids if (code := self._codes.pop(o, None)) is not None]
        if not codes:
            return
        rows = np.flatnonzero(np.isin(self._obj[: self._count], np.asarray(codes, dtype=np.int32)))[::-1]
        if self.ann is not None and len(rows):
            removed = self._ids[rows]
            for chunk_id in removed.tolist():
                self._ann_todo.pop(chunk_id, None)
            self.ann.remove(removed)
        # from the last row down, each filled with the cache's last row: every row past the
        # current one that goes has gone already, so the last row is always one that stays
        for row in rows.tolist():
            last = self._count - 1
            gone = int(self._ids[row])
            if self._row_of is not None:
                del self._row_of[gone]
            left = self._per_seq[gone >> DATASET_SHIFT] - 1
            if left:
                self._per_seq[gone >> DATASET_SHIFT] = left
            else:
                del self._per_seq[gone >> DATASET_SHIFT]
            if row != last:
                moved_id = int(self._ids[last])
                self._ids[row] = moved_id
                self._mat[row] = self._mat[last]
                self._obj[row] = self._obj[last]
                if self._row_of is not None:
                    self._row_of[moved_id] = row
            self._count -= 1

    def _apply(self, current: dict[str, list[tuple[int, bytes]]]) -> None:
        self._remove_objects(list(current))
        for object_id, vectors in current.items():
            if vectors:
                ids = np.asarray([v[0] for v in vectors], dtype=np.int64)
                floats = np.frombuffer(b"".join(v[1] for v in vectors), dtype=np.float32).reshape(len(vectors), DIMENSIONS)
                self._append(ids, quantize(floats), [object_id] * len(vectors))

    # -- searching --------------------------------------------------------------------------
    def _in_scope(self, seqs: Sequence[int]) -> int:
        """Chunks in these datasets (on the event loop: the counts change there)."""
        return sum(self._per_seq.get(seq, 0) for seq in set(seqs))

    def _graph_usable(self, include: set[int] | None, in_scope: int) -> bool:
        return (self.ann is not None and self.ann.ready and include is None
                and in_scope >= min(ANN_MIN_SCOPE, self._ann_min) and in_scope * 8 >= self._count)

    def _approximate(self, query: np.ndarray, seqs: np.ndarray, include: set[int] | None, exclude: set[int],
                     k: int, in_scope: int) -> list[int] | None:
        """The graph's candidates when it may answer: it holds every row, no ``include`` set,
        a scope of at least ``ANN_MIN_SCOPE`` chunks (or ``ann_min_chunks``, if lower) and
        an eighth of the cache (the graph is asked for proportionally more to make up for
        the rest), at most ``ANN_MAX_COUNT`` asked for; None otherwise, or when too few
        came back."""
        if not self._graph_usable(include, in_scope):
            return None
        assert self.ann is not None
        wanted = set(seqs.tolist())
        count = k * self._count // in_scope + len(exclude)
        if count > ANN_MAX_COUNT:
            return None
        keys = self.ann.search(quantize(query[None, :])[0], count).tolist()
        live = self._row_of
        assert live is not None
        out = [c for c in keys if c in live and (c >> DATASET_SHIFT) in wanted and c not in exclude][:k]
        return out if len(out) >= min(k, in_scope) else None

    def _candidates(self, query: np.ndarray, seqs: np.ndarray, include: set[int] | None, exclude: set[int], k: int,
                    in_scope: int = 0) -> list[int]:
        approximate = self._approximate(query, seqs, include, exclude, k, in_scope)
        if approximate is not None:
            return approximate
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
        keys = nearest_rows(matrix, quantize(query[None, :])[0], min(k, len(rows)))
        picked = keys if len(rows) == n else rows[keys]
        return [int(x) for x in ids[picked]]

    async def search(
        self, query: np.ndarray, dataset_seqs: Sequence[int], k: int, *, include: set[int] | None = None,
        exclude: set[int] | None = None, accept: Accept | None = None,
    ) -> list[tuple[int, float]] | None:
        """``(chunk id, cosine)`` of the ``k`` chunks nearest ``query`` among the datasets
        ``dataset_seqs``, within ``include`` (when given) and outside ``exclude``.

        ``accept`` (the query's constraints) keeps those of a list of candidates that
        satisfy them: the nearest ``k × margin`` candidates are asked for, then four and
        sixteen times as many while too few pass. None when even those leave too few and
        the scope was not exhausted: the caller then gathers the constraints' whole sets."""
        await self.sync()
        if self._count == 0 or k <= 0 or not dataset_seqs or (include is not None and not include):
            return []
        seqs = np.asarray(sorted(dataset_seqs), dtype=np.int64)
        want = k * RESCORE_MARGIN + 16
        in_scope = self._in_scope(dataset_seqs)
        candidates: list[int]
        if accept is None:
            candidates = await trio.to_thread.run_sync(self._candidates, query, seqs, include, exclude or set(), want, in_scope,
                                                       limiter=self._limiter)
        else:
            # the exact scan costs the same for any count: it is asked once for the last
            # round's count and the rounds check growing prefixes of its answer (the graph
            # is asked again per round: a larger count walks more of it)
            widest = want * 4 ** (ACCEPT_ROUNDS - 1)
            graph = self._graph_usable(include, in_scope)
            fetch, checked, candidates = want, 0, []
            found: list[int] = []
            for _ in range(ACCEPT_ROUNDS):
                if graph or not found:
                    found = await trio.to_thread.run_sync(self._candidates, query, seqs, include, exclude or set(),
                                                          fetch if graph else widest, in_scope, limiter=self._limiter)
                    if graph:
                        checked, candidates = 0, []
                fresh = found[checked:fetch]
                passed = await accept(fresh)
                candidates += [c for c in fresh if c in passed]
                checked = min(fetch, len(found))
                if len(candidates) >= want or len(found) < fetch:
                    break
                fetch *= 4
            else:
                return None
            candidates = candidates[:want]
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
