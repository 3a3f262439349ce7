"""``POST /v1/search``: lexical (BM25), vector (MiniLM cosine) and hybrid (RRF) search.

One search: parse the query (:mod:`engine.market.query`), find the datasets the caller
may search (:mod:`engine.market.discovery`), expand its patterns over the dictionary
(:mod:`engine.market.expand`), then rank:

* ``lexical``: the store's BM25 over chunks matching the whole query;
* ``vector``: cosine of the query's embedding to every chunk that satisfies the query's
  constraints (``+`` clauses and explicit ``AND`` operands must match, ``-``/``NOT``
  clauses must not): a semantic search that still honours what the buyer insisted on;
* ``hybrid``: both lists (the best ``FUSION_DEPTH`` of each, or more for deep pages)
  fused by reciprocal rank fusion, ``Σ 1 / (60 + rank)``; every result satisfies the
  constraints, lexical ones the whole query.

Only chunks of ``active`` objects are ever returned. Ties are broken by the chunk's index
order, so an unchanged index always gives the same order. Pages: the cursor carries the
search's id, the query's fingerprint (query, mode, datasets) and the last result's (score,
chunk), sealed by engine/pagination.py (bound to the caller's tenant and the list), so an
altered, foreign or other-query cursor is a 400; the next page re-runs the search and
continues strictly after that result (Elasticsearch's ``search_after``), so a result never
repeats, even if the index changed in between. Deep paging stops at
``search.max_result_window`` results.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import structlog
import trio

from engine.auth import Principal
from engine.config import SearchConfig
from engine.errors import InvalidRequest, ServiceUnavailable
from engine.ids import new_id, utcnow
from engine.market.discovery import Discovery, Scope
from engine.market.embed import EmbeddingsUnavailable, query_embedder
from engine.market.expand import expand
from engine.market.query import Node, Query, is_empty, parse, positive_terms
from engine.market.recorder import Recorder
from engine.market.snippets import snippet
from engine.market.vectors import VectorCache
from engine.pagination import open_cursor, seal_cursor
from engine.store.base import Store
from engine.store.records import Impression, SearchRecord
from engine.store.search import ChunkHit

log = structlog.get_logger(__name__)

MODES = ("hybrid", "lexical", "vector")
RRF_K = 60
FUSION_DEPTH = 100


@dataclass(frozen=True)
class Result:
    result_id: str
    rank: int
    score: float
    dataset_id: str
    object_id: str
    chunk_index: int
    snippet: str
    highlights: list[tuple[int, int]]
    original_filename: str
    mime_type: str
    chunk_id: int


@dataclass(frozen=True)
class SearchPage:
    search_id: str
    results: list[Result]
    next_cursor: str | None
    has_more: bool


@dataclass(frozen=True)
class _Cursor:
    search_id: str
    rank: int  # rank of the last result shown
    score: float
    chunk_id: int
    fingerprint: str


def result_id(search_id: str, rank: int) -> str:
    digest = hashlib.sha256(f"{search_id}:{rank}".encode()).digest()
    return "res_" + base64.b32encode(digest[:15]).decode().lower()


def _fingerprint(query: str, mode: str, dataset_ids: Sequence[str] | None) -> str:
    return hashlib.sha256(orjson.dumps([query, mode, sorted(dataset_ids or [])])).hexdigest()[:16]


def _encode_cursor(c: _Cursor) -> str:
    """The cursor's fields, sealed with the server's key and bound to the caller's tenant."""
    data = {"v": 1, "s": c.search_id, "r": c.rank, "k": [c.score, c.chunk_id], "f": c.fingerprint}
    return seal_cursor(orjson.dumps(data))  # sealed and bound to the caller's tenant (engine/pagination.py)


def _bad_cursor(reason: str = "not a cursor returned by this search") -> InvalidRequest:
    return InvalidRequest("cursor is not valid", {"fields": {"cursor": reason}})


def _decode_cursor(cursor: str) -> _Cursor:
    try:
        data = orjson.loads(open_cursor(cursor))
        score, chunk_id = data["k"]
        parsed = _Cursor(str(data["s"]), int(data["r"]), float(score), int(chunk_id), str(data["f"]))
        if data.get("v") != 1 or not parsed.search_id.startswith("srch_") or parsed.rank < 1:
            raise ValueError
        return parsed
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise _bad_cursor() from None


def fuse(lists: Sequence[Sequence[tuple[int, float]]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: ``Σ 1 / (k + rank)`` over the lists a chunk is in (ranks from 1)."""
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


class Search:
    def __init__(
        self, store: Store, discovery: Discovery, recorder: Recorder, vectors: VectorCache, cfg: SearchConfig,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.discovery = discovery
        self.recorder = recorder
        self.vectors = vectors
        self.cfg = cfg
        self.now = now
        self._embed_limiter = trio.CapacityLimiter(2)
        # vector and hybrid searches rank a few at a time: each holds a query embedding's
        # activations, candidate lists and a vector scan's buffers, and on 2 cores more at
        # once only share the same CPU while each holds its memory longer
        self._heavy = trio.CapacityLimiter(cfg.max_concurrent_vector)

    async def search(
        self, principal: Principal, query: str, dataset_ids: Sequence[str] | None, mode: str, limit: int, cursor: str | None
    ) -> SearchPage:
        parsed = parse(query)
        scope = await self.discovery.scope(principal, dataset_ids)
        fingerprint = _fingerprint(query, mode, dataset_ids)
        after = None
        if cursor:
            after = _decode_cursor(cursor)
            if after.fingerprint != fingerprint:
                raise _bad_cursor("this cursor belongs to another query, mode or dataset list")
            owned = self.recorder.pending_search(principal.tenant_id, after.search_id) or await self.store.get_search(
                principal.tenant_id, after.search_id
            )
            if owned is None:
                raise _bad_cursor()
        search_id = after.search_id if after else new_id("srch")
        start_rank = after.rank if after else 0
        window = min(start_rank + limit + 1, self.cfg.max_result_window + 1)
        ranked, root, hits = await self._rank(parsed, scope, mode, window) if start_rank < self.cfg.max_result_window else ([], None, {})
        if hits is None:
            hits = await self.store.chunk_hits([chunk_id for chunk_id, _ in ranked]) if ranked else {}
        listed = [(cid, score) for cid, score in ranked
                  if (h := hits.get(cid)) is not None and h.object_status == "active" and h.dataset_id in scope.datasets]
        if after is not None:
            key = (-after.score, after.chunk_id)
            listed = [item for item in listed if (-item[1], item[0]) > key]
        room = max(0, min(limit, self.cfg.max_result_window - start_rank))
        page, has_more = listed[:room], len(listed) > room and start_rank + room < self.cfg.max_result_window
        terms = set(positive_terms(root)) if root is not None else set()
        results = []
        for offset, (chunk_id, score) in enumerate(page):
            hit = hits[chunk_id]
            rank = start_rank + offset + 1
            cut = snippet(hit.text, terms)
            results.append(Result(result_id(search_id, rank), rank, score, hit.dataset_id, hit.object_id, hit.chunk_no, cut.text,
                                  cut.highlights, hit.original_filename, hit.mime_type, chunk_id))
        self._record(principal, parsed, mode, dataset_ids, search_id, after is None, results, scope, hits)
        next_cursor = None
        if has_more and results:
            last = results[-1]
            next_cursor = _encode_cursor(_Cursor(search_id, last.rank, last.score, last.chunk_id, fingerprint))
        return SearchPage(search_id, results, next_cursor, bool(next_cursor))

    # -- ranking -------------------------------------------------------------------------
    async def _rank(self, parsed: Query, scope: Scope, mode: str, window: int
                    ) -> tuple[list[tuple[int, float]], Node, dict[int, ChunkHit] | None]:
        """The ranked ``(chunk id, score)`` list, the expanded query tree, and the ranked
        chunks when read along (lexical mode reads both at once)."""
        nodes = await expand(self.store, [parsed.root, *parsed.required, *parsed.excluded], self.cfg.max_expansions)
        root = nodes[0]
        required = nodes[1: 1 + len(parsed.required)]
        excluded = nodes[1 + len(parsed.required):]
        seqs = scope.seqs
        if not seqs:
            return [], root, {}
        if mode == "lexical":
            if is_empty(root):
                return [], root, {}
            ranked, hits = await self.store.lexical_hits(root, seqs, window)
            return ranked, root, hits
        async with self._heavy:
            return await self._rank_heavy(parsed, root, required, excluded, seqs, mode, window), root, None

    async def _rank_heavy(self, parsed: Query, root: Node, required: Sequence[Node], excluded: Sequence[Node], seqs: list[int],
                          mode: str, window: int) -> list[tuple[int, float]]:
        depth = max(window, FUSION_DEPTH)
        if mode == "vector":
            return await self._vector(parsed, root, required, excluded, seqs, window)
        lexical = await self._lexical(root, seqs, depth)
        try:
            vector = await self._vector(parsed, root, required, excluded, seqs, depth)
        except ServiceUnavailable:
            vector = []  # no embedding model: hybrid is lexical alone
        return fuse([lexical, vector])

    async def _lexical(self, root: Node, seqs: list[int], limit: int) -> list[tuple[int, float]]:
        if is_empty(root):
            return []
        return await self.store.lexical_search(root, seqs, limit)

    async def _vector(self, parsed: Query, root: Node, required: Sequence[Node], excluded: Sequence[Node], seqs: list[int],
                      k: int) -> list[tuple[int, float]]:
        text = parsed.vector_text or " ".join(dict.fromkeys(t.rstrip("*") for t in positive_terms(root)))
        if not text.strip():
            return []
        vector = await self._embed(text)
        if any(is_empty(node) for node in required):
            return []
        excluded = [node for node in excluded if not is_empty(node)]
        if not required and not excluded:
            return await self.vectors.search(vector, seqs, k) or []

        async def accept(ids: list[int]) -> set[int]:
            """The candidates satisfying every constraint, checked on the candidates alone."""
            kept = set(ids)
            for node in required:
                kept = await self.store.filter_matching(sorted(kept), node) if kept else kept
            for node in excluded:
                kept -= await self.store.filter_matching(sorted(kept), node) if kept else set()
            return kept

        found = await self.vectors.search(vector, seqs, k, accept=accept)
        if found is not None:
            return found
        # too few candidates passed (a rare required word, a negated word in nearly every
        # chunk): the constraints' whole sets, as the exact answer needs
        include: set[int] | None = None
        for node in required:
            ids = await self.store.matching_ids(node, seqs)
            include = ids if include is None else include & ids
        exclude: set[int] = set()
        for node in excluded:
            exclude |= await self.store.matching_ids(node, seqs)
        return await self.vectors.search(vector, seqs, k, include=include, exclude=exclude) or []

    async def _embed(self, text: str) -> np.ndarray:
        try:
            embedder = await trio.to_thread.run_sync(query_embedder, limiter=self._embed_limiter)
        except EmbeddingsUnavailable as exc:
            raise ServiceUnavailable(f"vector search is unavailable: {exc}") from None
        return await trio.to_thread.run_sync(embedder.embed, text, limiter=self._embed_limiter)

    # -- recording ---------------------------------------------------------------------------
    def _record(self, principal: Principal, parsed: Query, mode: str, dataset_ids: Sequence[str] | None, search_id: str,
                first: bool, results: list[Result], scope: Scope, hits: dict[int, ChunkHit]) -> None:
        now = self.now()
        impressions = [
            Impression(search_id, r.rank, r.dataset_id, scope.datasets[r.dataset_id].tenant_id, principal.tenant_id, r.object_id,
                       r.chunk_index, now)
            for r in results
        ]
        record = None
        if first:
            record = SearchRecord(search_id, principal.tenant_id, principal.user_id, principal.api_key_id, parsed.source, mode,
                                  tuple(dataset_ids or ()), parsed.words, len(results), now)
        self.recorder.add(record, impressions, None if first else (search_id, len(results)))


def result_view(r: Result) -> dict[str, Any]:
    return {
        "result_id": r.result_id, "rank": r.rank, "score": r.score, "dataset_id": r.dataset_id, "object_id": r.object_id,
        "chunk_index": r.chunk_index, "snippet": r.snippet, "highlights": [list(h) for h in r.highlights],
        "original_filename": r.original_filename, "mime_type": r.mime_type,
    }
