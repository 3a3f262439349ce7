"""Recall@10 of the engine's HNSW graph settings on real MiniLM embeddings (not a timed benchmark).

    python bench/search_recall.py [--chunks 20000] [--max-tokens 64] [--queries 200]

Embeds ``--chunks`` chunks of the search benchmark's generated corpus (bench/search.py's
``Corpus``) with the pipeline's model (sentence-transformers, all-MiniLM-L6-v2, each chunk
cut at ``--max-tokens`` tokens so this takes minutes, not an hour, on 2 cores; the
embeddings are cached under ``--cache``), and the benchmark's plain-word queries with the
engine's query embedder. Then, for the engine's settings (engine/market/ann.py) and a few
others, builds the usearch graph over the engine's int8 rows (engine/market/vectors.py's
``quantize``) and measures what a vector search returns: the graph's nearest
``k × 2 + 16`` candidates rescored exactly in float32, the best 10 of them, against the
exact float32 top 10. Prints one line per setting: recall@10, build seconds, ms a search.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.search import Corpus  # noqa: E402
from engine.market import ann  # noqa: E402
from engine.market.vectors import RESCORE_MARGIN, quantize  # noqa: E402

SETTINGS = [(16, 64, 128), (16, 128, 512), (32, 256, 512), (ann.CONNECTIVITY, ann.EXPANSION_ADD, ann.EXPANSION_SEARCH)]


def embeddings(texts: list[str], max_tokens: int, cache: Path) -> np.ndarray:
    if cache.exists():
        return np.load(cache)
    from sentence_transformers import SentenceTransformer

    from engine.market.embed import model_dir

    model = SentenceTransformer(str(model_dir()), device="cpu")
    model.max_seq_length = max_tokens
    started = time.perf_counter()
    out = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    print(f"embedded {len(texts)} chunks in {time.perf_counter() - started:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def recall(matrix: np.ndarray, queries: np.ndarray, connectivity: int, expansion_add: int, expansion_search: int,
           k: int = 10) -> tuple[float, float, float]:
    from usearch.index import Index, MetricKind

    index = Index(ndim=matrix.shape[1], metric=MetricKind.Cos, dtype="i8", connectivity=connectivity,
                  expansion_add=expansion_add, expansion_search=expansion_search)
    started = time.perf_counter()
    index.add(np.arange(len(matrix), dtype=np.uint64), quantize(matrix), threads=2)
    build = time.perf_counter() - started
    got, spent = [], 0.0
    for q in queries:
        started = time.perf_counter()
        keys = np.asarray(index.search(quantize(q[None, :])[0], k * RESCORE_MARGIN + 16, threads=1).keys, dtype=np.int64)
        spent += time.perf_counter() - started
        keys = keys[keys >= 0]
        found = set(keys[np.argsort(-(matrix[keys] @ q))[:k]].tolist())
        exact = set(np.argpartition(-(matrix @ q), k)[:k].tolist())
        got.append(len(found & exact) / k)
    return float(np.mean(got)), build, spent / len(queries) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=20_000)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--cache", type=Path, default=Path("/tmp/ipto-search-recall"))
    args = p.parse_args()
    from engine.market.embed import query_embedder

    corpus = Corpus()
    texts, _ = corpus.grow(args.chunks)
    matrix = embeddings(texts, args.max_tokens, args.cache / f"chunks-{args.chunks}-{args.max_tokens}.npy")
    embedder = query_embedder()
    words = [q for q in corpus.queries(args.queries * 3) if not any(ch in q for ch in '"-*')][: args.queries]
    queries = np.stack([embedder.embed(q) for q in words])
    for connectivity, expansion_add, expansion_search in SETTINGS:
        r, build, ms = recall(matrix, queries, connectivity, expansion_add, expansion_search)
        engine = " (the engine's)" if (connectivity, expansion_add, expansion_search) == SETTINGS[-1] else ""
        print(f"M={connectivity} expansion_add={expansion_add} expansion_search={expansion_search}{engine}: "
              f"recall@10 {r:.3f}, build {build:.1f} s, {ms:.2f} ms a search ({args.chunks} chunks)", flush=True)


if __name__ == "__main__":
    main()
