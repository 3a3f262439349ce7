"""Search: lexical, vector and hybrid ``POST /v1/search`` against bare-index baselines and a peer.

    python -m bench search [--steps 50000,200000] [--queries 300] [--clients 1,16] [--rounds 3]

Builds a corpus of generated text (a 40,000-word vocabulary drawn with Zipf's law,
s = 1.1, 100–180 words a chunk, about the pipeline's 1,000-character chunks) and random
unit vectors (384 dimensions) standing in for MiniLM embeddings: the cost of a vector
search does not depend on what the vectors mean. The chunks are **loaded into the store
directly** through the store's own ``replace_index`` (the pipeline's last step: folding,
FTS5, vectors), 100 chunks an object, skipping upload, review, extraction and embedding.
Then, per corpus size (each step adds chunks to the same store):

* the engine (``ipto serve``, SQLite, its own process) answers ``POST /v1/search`` in each
  mode to 1 and 16 concurrent closed-loop clients (each on its own keep-alive connection,
  :class:`bench.client.Conn` under trio in this process: tens of µs of CPU a request
  where httpx's threads took 0.7–2.4 ms of the same 2 cores), each run with queries no
  earlier run used (no warm query-embedding cache); p50/p99 latency, queries/s, the CPU a
  search costs the engine and the clients, and the engine's peak RSS (VmHWM) over the
  whole run;
* baselines in this process, same data, same queries: the bare FTS5 query
  (``MATCH … ORDER BY bm25 LIMIT 10`` on the engine's own index, one connection per
  thread) and numpy top-k (a float32 matrix product and ``argpartition`` over the same
  vectors, query embeddings computed beforehand). Lexical search runs in ``--rounds``
  rounds (3), each on its own queries with the bare query on the same queries right
  before or after it (alternating), while the engine idles: the ratio the lexical target
  is judged on compares figures taken seconds apart (the host's speed drifts within the
  hour), and each round's ratio is printed;
* the peer: tantivy (in-process, its own index of the same texts, its Lucene-syntax parser).

After the warm-up searches the benchmark waits until the engine's CPU is idle: past
``search.ann_min_chunks`` (300,000 by default, so not at the benchmark's sizes; set
``IPTO_SEARCH_ANN_MIN_CHUNKS`` to measure it lower) the engine builds its HNSW graph in the
background from the first vector search on, and the searches are measured once it is built (the wait and the RSS before the
searches are printed). It then measures the engine's vector recall@10 against the exact
float32 top 10 of the same query embeddings (60 plain-word queries). The vectors are random,
the worst case for a graph index (no clusters, neighbours barely nearer than the rest).

Queries: two mid-frequency words; a common and a rare word; one word; a two-word phrase
taken from the corpus; ``word -word``; a prefix ``abcd*``. Left out: network distance,
TLS, many tenants' datasets (one listed dataset here), concurrent writes while searching,
PostgreSQL (the same engine on PostgreSQL is not measured here).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.report import Row, Section  # noqa: E402

VOCAB = 40_000
CHUNKS_PER_OBJECT = 100
DIM = 384
MODES = ("lexical", "vector", "hybrid")


# -- corpus ------------------------------------------------------------------------------
def vocabulary(rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["qu", "th", "sh", "ch", "tr", "st", "er", "an", "on"]
    words: set[str] = set()
    while len(words) < VOCAB:
        words.add("".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 3, 4)))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.words = vocabulary(self.rng)
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        p = 1.0 / ranks**1.1
        self.cdf = np.cumsum(p / p.sum())
        self.texts: list[str] = []

    def grow(self, n: int) -> tuple[list[str], np.ndarray]:
        lengths = self.np_rng.integers(100, 181, size=n)
        draws = np.searchsorted(self.cdf, self.np_rng.random(int(lengths.sum())))
        texts, at = [], 0
        for length in lengths:
            words = [self.words[i] for i in draws[at: at + length]]
            at += length
            words[0] = words[0].capitalize()
            for cut in range(12, len(words), self.rng.randint(9, 16)):
                words[cut - 1] += "."
            texts.append(" ".join(words) + ".")
        vectors = self.np_rng.standard_normal((n, DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self.texts += texts
        return texts, vectors

    def queries(self, count: int) -> list[str]:
        w, r = self.words, self.rng
        out = []
        for i in range(count):
            kind = i % 10
            if kind in (0, 1, 2):
                out.append(f"{w[r.randint(200, 3000)]} {w[r.randint(200, 3000)]}")
            elif kind in (3, 4):
                out.append(f"{w[r.randint(10, 200)]} {w[r.randint(3000, 20000)]}")
            elif kind == 5:
                out.append(w[r.randint(200, 3000)])
            elif kind == 6:
                text = r.choice(self.texts).replace(".", "").lower().split()
                at = r.randrange(len(text) - 1)
                out.append(f'"{text[at]} {text[at + 1]}"')
            elif kind in (7, 8):
                out.append(f"{w[r.randint(200, 3000)]} -{w[r.randint(10, 200)]}")
            else:
                word = w[r.randint(200, 3000)]
                out.append(f"{word[:4]}*" if len(word) > 4 else word)
        return out


# -- loading the store directly ----------------------------------------------------------
def load(db: Path, tenant_id: str, dataset_id: str, texts: Sequence[str], vectors: np.ndarray, first_object: int) -> None:
    import trio

    from engine.ids import utcnow
    from engine.store.records import ObjectRecord
    from engine.store.sqlite.sqltime import ts
    from engine.store.sqlite.store import SqliteStore

    async def go() -> None:
        async with SqliteStore.open(db) as store:
            now = utcnow()
            for n, start in enumerate(range(0, len(texts), CHUNKS_PER_OBJECT)):
                oid = f"obj_bench{first_object + n:012d}"
                obj = ObjectRecord(oid, tenant_id, dataset_id, f"blob_{oid[4:]}", f"upl_{oid[4:]}", f"doc{first_object + n}.txt",
                                   "text/plain", 100_000, None, None, "active", "approved", now, now)
                await store.write(lambda c, o=obj: c.execute(
                    "INSERT INTO objects (id, tenant_id, dataset_id, blob_id, upload_id, original_filename, mime_type, size_bytes,"
                    " status, review_state, created_at, updated_at, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (o.id, o.tenant_id, o.dataset_id, o.blob_id, o.upload_id, o.original_filename, o.mime_type, o.size_bytes,
                     o.status, o.review_state, ts(now), ts(now), ts(now))), durable=False)
                chunk = slice(start, start + CHUNKS_PER_OBJECT)
                await store.replace_index(obj, texts[chunk], [v.tobytes() for v in vectors[chunk]])
            await store.flush()

    trio.run(go)


# -- measuring ---------------------------------------------------------------------------
def settle(server: harness.Server, timeout: float = 900.0) -> float:
    """Wait until the engine's CPU is idle (it builds its HNSW graph in the background after
    start past ``search.ann_min_chunks``); the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    last = server.cpu()
    while time.perf_counter() - started < timeout and quiet < 3:
        time.sleep(1.0)
        now = server.cpu()
        quiet = quiet + 1 if now - last < 0.05 else 0
        last = now
    return time.perf_counter() - started - 3.0


def vector_recall(server: harness.Server, token: str, queries: Sequence[str], vectors: np.ndarray, matrix: np.ndarray) -> float:
    """Mean recall@10 of the engine's vector search against the exact float32 top 10 of the
    same query embeddings over the same vectors (plain-word queries only)."""
    import httpx

    got = []
    with httpx.Client(base_url=server.base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as h:
        for q, v in zip(queries, vectors, strict=True):
            if any(ch in q for ch in '"-*'):
                continue
            results = h.post("/v1/search", json={"query": q, "mode": "vector", "limit": 10}).json()["data"]["results"]
            found = {int(r["original_filename"][3:-4]) * CHUNKS_PER_OBJECT + r["chunk_index"] for r in results}
            scores = matrix @ v
            exact = set(np.argpartition(-scores, 10)[:10].tolist())
            got.append(len(found & exact) / 10)
    return float(np.mean(got)) if got else float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def drive(call: Callable[[str], Any], queries: Sequence[str], clients: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, queries/s) of ``call`` over ``queries`` from ``clients`` threads."""
    latencies: list[float] = []
    todo = list(queries)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                q = todo.pop()
            t0 = time.perf_counter()
            call(q)
            with lock:
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - started
    return _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000, len(queries) / wall


def drive_engine(base: str, token: str, mode: str, queries: Sequence[str], clients: int) -> tuple[float, float, float, list[str], int]:
    """(p50 ms, p99 ms, queries/s, first errors, error count) of ``POST /v1/search`` over
    ``queries`` from ``clients`` closed-loop clients, each on its own keep-alive connection
    (:class:`bench.client.Conn` under trio, in this process)."""
    import trio

    from bench.client import Conn

    latencies: list[float] = []
    errors: list[str] = []
    todo = list(queries)

    async def one_client() -> None:
        async with Conn(base) as conn:
            while todo:
                q = todo.pop()
                t0 = time.perf_counter()
                reply = await conn.request("POST", "/v1/search", json={"query": q, "mode": mode, "limit": 10}, token=token)
                latencies.append(time.perf_counter() - t0)
                if reply.status != 200:
                    errors.append(f"{reply.status} {reply.body[:120]!r}")

    async def main() -> float:
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(one_client)
        return time.perf_counter() - started

    wall = trio.run(main)
    return _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000, len(queries) / wall, errors[:3], len(errors)


def engine_runs(server: harness.Server, token: str, pool: list[str], n: int, clients_list: Sequence[int], rounds: int,
                db: Path, used: dict[tuple[str, int], list[str]]) -> tuple[dict[tuple[str, int], list[Any]], dict[int, list[Any]]]:
    """Each mode at each client count on its own queries from ``pool``; ``used`` gets them, so
    the baselines run on exactly the queries the engine ran. Also the CPU a search costs the
    engine (all its threads, from ``/proc``) and this process (the clients: the load shares
    the engine's cores).

    Lexical search runs in ``rounds`` rounds, each on its own queries, each beside the bare
    FTS5 query on the same queries (run here while the engine idles), in alternating order:
    the ratio compares measurements seconds apart, not minutes (the host's speed drifts by
    up to 2× within the hour, bench/README.md). Returns the engine's runs per (mode,
    clients) and, per client count, each round's bare-query figures and queries."""
    out: dict[tuple[str, int], list[Any]] = {}
    bare: dict[int, list[Any]] = {}
    for mode in MODES:
        for clients in clients_list:
            used[(mode, clients)] = []
            for r in range(rounds if mode == "lexical" else 1):
                queries = [pool.pop() for _ in range(n * (2 if clients > 1 else 1))]
                used[(mode, clients)] += queries
                bare_first = r % 2 == 1  # the order alternates per round
                if mode == "lexical" and bare_first:
                    bare.setdefault(clients, []).append((fts5_baseline(db, queries, clients), queries))
                engine_cpu, client_cpu = server.cpu(), time.process_time()
                p50, p99, qps, errors, n_errors = drive_engine(server.base, token, mode, queries, clients)
                engine_ms = (server.cpu() - engine_cpu) * 1000 / len(queries)
                client_ms = (time.process_time() - client_cpu) * 1000 / len(queries)
                out.setdefault((mode, clients), []).append((p50, p99, qps, errors, n_errors, engine_ms, client_ms))
                if mode == "lexical" and not bare_first:
                    bare.setdefault(clients, []).append((fts5_baseline(db, queries, clients), queries))
                print(f"  engine {mode:8s} c={clients:<3d} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {qps:7.1f} q/s"
                      f"  CPU/search engine {engine_ms:.2f} ms, clients {client_ms:.2f} ms"
                      + (f"  errors {n_errors}: {errors[:1]}" if errors else ""), flush=True)
                if mode == "lexical":
                    fts = bare[clients][-1][0]
                    print(f"    bare FTS5 same queries p50 {fts[0]:7.1f} ms  p99 {fts[1]:7.1f} ms  {fts[2]:7.1f} q/s"
                          f"  → engine {qps / fts[2]:.2f}× (round {r + 1} of {rounds})", flush=True)
    return out, bare


def fts5_baseline(db: Path, queries: Sequence[str], clients: int) -> tuple[float, float, float]:
    from engine.market.query import parse
    from engine.store.sqlite.search import fts5_expression

    def native(q: str) -> str:
        if q.endswith("*") and " " not in q:
            return f'"{q[:-1].lower()}" *'
        return fts5_expression(parse(q).root)

    compiled = [native(q) for q in queries]
    local = threading.local()

    def call(expression: str) -> None:
        if not hasattr(local, "db"):
            local.db = sqlite3.connect(db, check_same_thread=False)
        local.db.execute("SELECT rowid, bm25(search_fts) FROM search_fts WHERE search_fts MATCH ? ORDER BY bm25(search_fts) LIMIT 10",
                         (expression,)).fetchall()

    return drive(call, compiled, clients)


def numpy_baseline(matrix: np.ndarray, query_vectors: np.ndarray, clients: int) -> tuple[float, float, float]:
    rows = list(range(len(query_vectors)))

    def call(i: Any) -> None:
        scores = matrix @ query_vectors[int(i)]
        top = np.argpartition(-scores, 10)[:10]
        top[np.argsort(-scores[top])]

    return drive(call, [str(i) for i in rows], clients)


def tantivy_peer(texts: Sequence[str], queries: Sequence[str], clients: int, index: Any = None) -> tuple[tuple[float, float, float], Any]:
    import tantivy

    if index is None:
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("body", stored=False)
        schema = builder.build()
        index = tantivy.Index(schema)
        writer = index.writer(heap_size=200_000_000, num_threads=2)
        for text in texts:
            writer.add_document(tantivy.Document(body=text))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
    searcher = index.searcher()

    def call(q: str) -> None:
        assert searcher.search(index.parse_query(q, ["body"], conjunction_by_default=True), 10).hits is not None

    return drive(call, queries, clients), index


# -- the benchmark -----------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser, quick: bool = False) -> None:
    p.add_argument("--steps", default="20000,50000" if quick else "50000,200000", help="corpus sizes, chunks (growing)")
    p.add_argument("--queries", type=int, default=100 if quick else 300, help="queries per run (16 clients: twice as many)")
    p.add_argument("--clients", default="1,16")
    p.add_argument("--rounds", type=int, default=3, help="lexical rounds, each beside the bare FTS5 query on its queries")


def run(args: argparse.Namespace, work: Path) -> list[Section]:
    import httpx

    from engine.market.embed import query_embedder

    steps = [int(s) for s in args.steps.split(",")]
    clients_list = [int(c) for c in args.clients.split(",")]
    corpus = Corpus()
    pool = corpus.queries(0)
    data = work / "data"
    with harness.engine(data) as server:  # migrate, then a provider, a buyer and a listed dataset
        with httpx.Client(base_url=server.base, timeout=60) as h:
            def signup(email: str) -> dict[str, Any]:
                return h.post("/v1/auth/signup", json={"email": email, "password": "bench password"}).json()["data"]

            provider, buyer = signup("provider@example.com"), signup("buyer@example.com")
            ds = h.post("/v1/datasets", headers={"Authorization": f"Bearer {provider['token']}"},
                        json={"name": "bench corpus", "visibility": "listed"}).json()["data"]
    sections = []
    loaded, all_vectors = 0, []
    embedder = query_embedder()
    index = None
    for target in steps:
        t0 = time.perf_counter()
        texts, vectors = corpus.grow(target - loaded)
        load(data / "engine.db", provider["tenant"]["tenant_id"], ds["dataset_id"], texts, vectors, loaded // CHUNKS_PER_OBJECT)
        all_vectors.append(vectors)
        loaded = target
        print(f"{loaded} chunks loaded ({time.perf_counter() - t0:.0f} s)", flush=True)
        pool = corpus.queries(args.queries * (1 + 2 * (len(clients_list) - 1)) * (len(MODES) + args.rounds - 1) + 50)
        used: dict[tuple[str, int], list[str]] = {}
        rows: list[Row] = []
        with harness.engine(data) as server:
            with httpx.Client(base_url=server.base, timeout=120) as h:  # warm: the vector cache loads, the model loads
                for mode in MODES:
                    h.post("/v1/search", headers={"Authorization": f"Bearer {buyer['token']}"}, json={"query": "warm up", "mode": mode})
            waited = settle(server)
            rss_before, peak_settled = server.rss_mib(), server.peak_rss_mib()
            print(f"  engine settled {waited:.0f} s after warm-up (HNSW build), RSS {rss_before:.0f} MiB, peak so far "
                  f"{peak_settled:.0f} MiB", flush=True)
            results, bare = engine_runs(server, buyer["token"], pool, args.queries, clients_list, args.rounds, data / "engine.db", used)
            peak = server.peak_rss_mib()
            matrix = np.concatenate(all_vectors)
            vector_queries = {c: np.stack([embedder.embed(q) for q in used[("vector", c)]]) for c in clients_list}
            recall_queries = used[("vector", clients_list[0])][:60]
            recall = vector_recall(server, buyer["token"], recall_queries, vector_queries[clients_list[0]][:60], matrix)
            print(f"  engine vector recall@10 vs exact float32: {recall:.3f}", flush=True)
        index = None
        ratios = {c: [run[2] / figures[2] for run, (figures, _) in zip(results[("lexical", c)], bare[c], strict=True)]
                  for c in clients_list}  # each lexical round over the bare query beside it
        for clients in clients_list:
            # like for like: the bare query (run beside each lexical round, engine_runs) and the
            # peer on the engine's lexical queries of each round at this client count, numpy on
            # its vector queries (hybrid is compared with the bare FTS5 row)
            fts = [figures for figures, _ in bare[clients]]
            peers = []
            for _, queries in bare[clients]:
                (peer, index) = tantivy_peer(corpus.texts, queries, clients, index)
                peers.append(peer)
            vec = numpy_baseline(matrix, vector_queries[clients], clients)
            print(f"  bare FTS5 c={clients:<3d} {' '.join(f'{f[2]:.1f}' for f in fts)} q/s | numpy top-k p50 {vec[0]:6.1f} ms"
                  f" {vec[2]:7.1f} q/s | tantivy {' '.join(f'{t[2]:.1f}' for t in peers)} q/s", flush=True)
            key = f"c{clients}"
            rows.append(Row(f"fts5-{key}", f"bare FTS5 query, {clients} thread(s)", "q/s", [f[2] for f in fts], is_baseline=True,
                            p50=[f[0] for f in fts], p99=[f[1] for f in fts], short="FTS5"))
            rows.append(Row(f"numpy-{key}", f"numpy top-k, {clients} thread(s)", "q/s", [vec[2]], is_baseline=True,
                            p50=[vec[0]], p99=[vec[1]], short="numpy"))
            rows.append(Row(f"tantivy-{key}", f"tantivy (peer), {clients} thread(s)", "q/s", [t[2] for t in peers], baseline=f"fts5-{key}",
                            p50=[t[0] for t in peers], p99=[t[1] for t in peers]))
            for mode in MODES:
                runs = results[(mode, clients)]
                base = f"fts5-{key}" if mode != "vector" else f"numpy-{key}"
                extra: dict[str, Any] = {"errors": sum(r[4] for r in runs), "first_errors": [e for r in runs for e in r[3]][:3],
                                         "engine_cpu_ms_per_search": float(np.median([r[5] for r in runs])),
                                         "client_cpu_ms_per_search": float(np.median([r[6] for r in runs]))}
                if mode == "lexical":
                    extra["ratio_per_round"] = ratios[clients]
                rows.append(Row(f"{mode}-{key}", f"engine {mode}, {clients} client(s)", "q/s", [r[2] for r in runs], baseline=base,
                                p50=[r[0] for r in runs], p99=[r[1] for r in runs], extra=extra))
        sections.append(Section(
            key=f"search-{loaded}", title=f"search at {loaded:,} chunks", rows=rows,
            baselines=["bare FTS5: MATCH … ORDER BY bm25 LIMIT 10 on the engine's own index, in this process",
                       "numpy top-k: float32 matrix @ query, argpartition, query embeddings precomputed"],
            notes=[f"engine peak RSS (VmHWM) {peak:.0f} MiB over the whole run, {peak_settled:.0f} MiB before the searches"
                   f" (load + HNSW build), {rss_before:.0f} MiB after warm-up; settled {waited:.0f} s after warm-up",
                   f"engine vector recall@10 against the exact float32 top 10: {recall:.3f} (plain-word queries)",
                   "lexical engine ÷ bare FTS5, each round on its own queries, seconds apart: "
                   + "; ".join(f"{c} client(s) " + " ".join(f"{x:.2f}" for x in ratios[c]) for c in clients_list),
                   "targets: lexical ≥ 0.5× bare FTS5 q/s; hybrid p50 ≤ 60 ms, p99 ≤ 250 ms at 200k; RSS ≤ 400 MiB"],
            meta={"chunks": loaded, "peak_rss_mib": peak, "peak_rss_before_searches_mib": peak_settled, "rss_after_warmup_mib": rss_before,
                  "settle_seconds": waited, "vector_recall_at_10": recall},
        ))
    return sections


if __name__ == "__main__":
    from bench.__main__ import entry

    sys.exit(entry(["search", *sys.argv[1:]]))
