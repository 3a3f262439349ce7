"""The vector cache: exact scans, the HNSW graph beside them, constraints on candidates."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from engine.market.vectors import DIMENSIONS, VectorCache
from engine.store.search import DATASET_SHIFT


class FakeIndexStore:
    """The five reads the vector cache makes, over vectors held in a dict."""

    def __init__(self) -> None:
        self.vectors: dict[int, tuple[str, bytes]] = {}  # chunk id -> (object id, float32 bytes)
        self.log: list[tuple[int, str]] = []

    def put(self, object_id: str, ids: list[int], matrix: np.ndarray) -> None:
        for chunk_id in [c for c, (o, _) in self.vectors.items() if o == object_id]:
            del self.vectors[chunk_id]
        for chunk_id, row in zip(ids, matrix, strict=True):
            self.vectors[chunk_id] = (object_id, row.astype(np.float32).tobytes())
        self.log.append((len(self.log) + 1, object_id))

    async def vector_count(self) -> int:
        return len(self.vectors)

    async def index_log_head(self) -> int:
        return len(self.log)

    async def index_changes(self, after: int, limit: int = 10_000) -> list[tuple[int, str]]:
        return [c for c in self.log if c[0] > after][:limit]

    async def vector_page(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        return [(c, o, v) for c, (o, v) in sorted(self.vectors.items()) if c > after_id][:limit]

    async def object_vectors(self, object_ids: list[str]) -> dict[str, list[tuple[int, bytes]]]:
        return {o: [(c, v) for c, (oo, v) in sorted(self.vectors.items()) if oo == o] for o in object_ids}

    async def vectors_for(self, ids: list[int]) -> dict[int, bytes]:
        return {c: self.vectors[c][1] for c in ids if c in self.vectors}


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.standard_normal((n, DIMENSIONS)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


@pytest.fixture(name="world")
def _world():
    rng = np.random.default_rng(3)
    store = FakeIndexStore()
    matrix = unit(rng, 1200)
    for n in range(12):  # 12 objects of 100 chunks, datasets 1 and 2
        seq = 1 + n % 2
        ids = [(seq << DATASET_SHIFT) | (n * 100 + i) for i in range(100)]
        store.put(f"obj{n}", ids, matrix[n * 100:(n + 1) * 100])
    return store, matrix, rng


async def wait_ready(cache: VectorCache) -> None:
    with trio.fail_after(30):
        while cache.ann is None or not cache.ann.ready:
            await trio.sleep(0.01)


async def test_the_graph_follows_the_cache_and_answers_like_the_exact_scan(world, nursery):
    store, matrix, rng = world
    cache = VectorCache(store, ann_min_chunks=500)  # type: ignore[arg-type]
    await nursery.start(cache.run)
    await cache.sync()  # the first search's sync loads the cache; the graph starts from it
    await wait_ready(cache)
    assert cache.ann is not None and cache.ann.nbytes() > 0
    used = []
    original = cache._approximate
    cache._approximate = lambda *a: used.append(1) or original(*a)  # type: ignore[method-assign]
    both = [1, 2]
    for row in (5, 333, 1111):  # a stored vector is its own nearest neighbour
        found = await cache.search(matrix[row], both, 5)
        assert found is not None and found[0][1] == pytest.approx(1.0, abs=1e-5)
        assert found[0][0] & ((1 << DATASET_SHIFT) - 1) == row
    assert len(used) == 3
    # the scope is kept: dataset 2 holds the odd objects only
    found = await cache.search(matrix[5], [2], 10)
    assert found and all(c >> DATASET_SHIFT == 2 for c, _ in found)
    # an object removed is never found again; one re-indexed is found with its new vectors
    store.put("obj0", [], matrix[:0])
    fresh = unit(rng, 100)
    store.put("obj1", [(2 << DATASET_SHIFT) | (100 + i) for i in range(100)], fresh)
    found = await cache.search(matrix[5], both, 10)
    assert found and all(c & ((1 << DATASET_SHIFT) - 1) >= 100 for c, _ in found)
    await wait_ready(cache)
    found = await cache.search(fresh[7], both, 3)
    assert found and found[0][0] == (2 << DATASET_SHIFT) | 107 and found[0][1] == pytest.approx(1.0, abs=1e-5)


async def test_constraints_are_checked_on_widening_candidate_lists(world):
    store, matrix, _ = world
    cache = VectorCache(store)  # type: ignore[arg-type]
    asked: list[int] = []
    keep = {c for c in store.vectors if c % 10 == 0}  # a tenth of the chunks pass

    async def accept(ids: list[int]) -> set[int]:
        asked.append(len(ids))
        return keep & set(ids)

    found = await cache.search(matrix[0], [1, 2], 3, accept=accept)
    assert found is not None and {c for c, _ in found} <= keep and len(found) == 3
    exact = sorted(((c, float(np.dot(matrix[c & 0xFFFF], matrix[0]))) for c in keep), key=lambda x: -x[1])[:3]
    assert [c for c, _ in found] == [c for c, _ in exact]
    assert asked == sorted(asked) and len(asked) > 1  # widened until enough passed (or the scope ran out)
    rare = {c for c in store.vectors if c % 300 == 0}
    assert await cache.search(matrix[0], [1, 2], 3, accept=lambda ids: _among(rare, ids)) is None  # the caller gathers the sets
    one = await cache.search(matrix[0], [1], 3, include=rare, exclude=set())
    assert one is not None and {c for c, _ in one} <= rare and all(c >> DATASET_SHIFT == 1 for c, _ in one)
    store.log.clear()
    small = VectorCache(FakeIndexStore())  # type: ignore[arg-type]
    small.store.put("o", [(1 << DATASET_SHIFT) | i for i in range(30)], matrix[:30])  # type: ignore[attr-defined]
    assert await small.search(matrix[0], [1], 3, accept=lambda ids: _among(set(), ids)) == []  # whole scope seen: none pass


async def _among(allowed: set[int], ids: list[int]) -> set[int]:
    return allowed & set(ids)


def test_the_exact_scan_is_the_int8_cosine_order():
    """:func:`nearest_rows` (numkong's int8 angular distance) ranks the rows as the cosine of
    their int8 values does, nearest first; equal rows by row number; an all-zero row (no
    direction) at cosine 0, as the float32 rescoring scores it; asked for at least as many
    rows as there are, every row."""
    from engine.market.vectors import nearest_rows, quantize

    rng = np.random.default_rng(11)
    matrix = quantize(unit(rng, 500))
    matrix[7] = matrix[3]  # a tie: row 3 before row 7
    matrix[9] = 0
    query = matrix[3].copy()
    as_float = matrix.astype(np.float64)
    norms = np.linalg.norm(as_float, axis=1)
    cosine = np.where(norms > 0, as_float @ query.astype(np.float64) / np.where(norms > 0, norms, 1) / np.linalg.norm(query), 0.0)
    expected = sorted(range(len(matrix)), key=lambda r: (-cosine[r], r))
    assert nearest_rows(matrix, query, 20).tolist() == expected[:20]
    assert nearest_rows(matrix, query, 20).tolist()[:2] == [3, 7]
    everything = nearest_rows(matrix, query, len(matrix) + 5).tolist()
    assert sorted(everything) == list(range(len(matrix)))
    assert np.all(np.diff(cosine[everything]) <= 1e-6)  # nearest first (numkong: float32 precision), the zero row among them
    assert 0 < everything.index(9) < len(matrix) - 1
