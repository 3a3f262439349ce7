"""The search index in PostgreSQL: the engine's folded terms in a ``tsvector`` it writes
itself, BM25 as SQLite's FTS5 computes it, vectors beside it.

* The ``tsvector`` literal comes from :mod:`engine.market.text` (terms and 1-based
  positions), never from PostgreSQL's parser, so phrases and proximities see the same
  positions as FTS5. Queries are compiled from the parsed tree to a ``tsquery`` literal.
* BM25 is FTS5's formula (k1 = 1.2, b = 0.75; IDF = ln((N − n + 0.5) / (n + 0.5)), at
  least 1e-6; N, n and the average length over the whole index) summed over the query's
  scored units (:func:`engine.market.query.scored_units`) in the same order, so both
  backends rank alike. Term frequencies come from each chunk's ``tf`` (jsonb), document
  frequencies from ``search_terms``, N and the token total from ``search_objects``. A
  plain prefix (:class:`engine.market.query.Prefix`, ``'abcd':*``) is one scored term, as
  FTS5 scores ``"abcd"*``: its frequency is the sum of the chunk's terms starting with it,
  its document frequency the chunks holding any. An exact phrase is one unit, as FTS5
  scores ``"a b"``: its frequency is how often it occurs in the chunk (counted from the
  ``tsvector``'s positions by ``ipto_phrase_count``, migration 0120), its document
  frequency the chunks holding it.
* The dictionary wildcards and regular expressions expand over is ``search_lexicon``,
  restricted to the terms ``search_terms`` still holds.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import asyncpg
import orjson

from engine.market.query import And, Node, Not, Or, Phrase, Prefix, Term, Terms, scored_units
from engine.market.text import index_chunk
from engine.store.postgres.access import PgAccess, PgConn, numbered
from engine.store.records import ObjectRecord
from engine.store.search import ChunkHit, chunk_id_range, next_chunk_id

K1, B = 1.2, 0.75


def tsquery(node: Node) -> str:
    """The ``tsquery`` literal of an expanded, non-empty tree (terms are letters and digits)."""
    if isinstance(node, Term):
        return f"'{node.term}'"
    if isinstance(node, Prefix):
        return f"'{node.prefix}':*"
    if isinstance(node, Terms):
        return "(" + " | ".join(f"'{t}'" for t in node.terms) + ")"
    if isinstance(node, Phrase):
        if node.slop == 0:
            return "(" + " <-> ".join(f"'{t}'" for t in node.terms) + ")"
        words = list(dict.fromkeys(node.terms))
        if len(words) == 1:
            return f"'{words[0]}'"
        pairs = []
        for a, b in itertools.combinations(words, 2):
            near = [f"'{x}' <{d}> '{y}'" for d in range(1, node.slop + 1) for x, y in ((a, b), (b, a))]
            pairs.append("(" + " | ".join(near) + ")")
        return "(" + " & ".join(pairs) + ")"
    if isinstance(node, Or):
        return "(" + " | ".join(tsquery(item) for item in node.items) + ")"
    if isinstance(node, And):
        parts = [tsquery(item) for item in node.items if not isinstance(item, Not)]
        parts += [f"!{tsquery(item.item)}" for item in node.items if isinstance(item, Not)]
        return "(" + " & ".join(parts) + ")"
    raise TypeError(f"cannot compile {type(node).__name__} to a tsquery")


def idf(n_rows: int, n_hit: int) -> float:
    """FTS5's IDF (fts5_aux.c, fts5Bm25Function)."""
    value = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
    return value if value > 0.0 else 1e-6


async def remove_index(c: PgConn, object_id: str) -> None:
    """Drop an object's index entries and log the change (vector caches follow the log)."""
    await c.execute("DELETE FROM search_vectors WHERE id IN (SELECT id FROM search_chunks WHERE object_id = ?)", object_id)
    removed = await c.execute("DELETE FROM search_chunks WHERE object_id = ?", object_id)
    await c.execute("DELETE FROM search_terms WHERE object_id = ?", object_id)
    await c.execute("DELETE FROM search_objects WHERE object_id = ?", object_id)
    if removed:
        await c.execute("INSERT INTO search_log (object_id) VALUES (?)", object_id)


_Row = tuple[int, str, int, str, str, str, str, str, int]


def _rows(obj: ObjectRecord, chunks: Sequence[str]) -> tuple[list[_Row], Counter[str], int]:
    rows: list[_Row] = []
    holding: Counter[str] = Counter()
    tokens = 0
    for n, text in enumerate(chunks):
        clean = text.replace("\x00", " ")  # PostgreSQL text cannot hold NUL
        indexed = index_chunk(clean)
        freq = indexed.frequencies()
        holding.update(freq.keys())
        tokens += indexed.length
        rows.append((n, obj.id, n, obj.dataset_id, obj.tenant_id, clean, indexed.tsvector(), orjson.dumps(freq).decode(), indexed.length))
    return rows, holding, tokens


async def write_index(c: PgConn, obj: ObjectRecord, rows: list[_Row], holding: Counter[str], tokens: int,
                      vectors: Sequence[bytes] | None) -> None:
    await remove_index(c, obj.id)
    dataset_seq = await c.fetchval("SELECT seq FROM datasets WHERE id = ?", obj.dataset_id)
    top = await c.fetchval("SELECT max(id) FROM search_chunks WHERE id >= ? AND id < ?", *chunk_id_range(dataset_seq))
    first = next_chunk_id(dataset_seq, top)
    await c.executemany(
        "INSERT INTO search_chunks (id, object_id, chunk_no, dataset_id, tenant_id, text, tsv, tf, doc_len)"
        " VALUES (?, ?, ?, ?, ?, ?, ?::tsvector, ?::jsonb, ?)",
        [(first + row[0], *row[1:]) for row in rows],
    )
    await c.execute("INSERT INTO search_objects (object_id, chunks, tokens) VALUES (?, ?, ?)", obj.id, len(rows), tokens)
    if holding:
        terms = sorted(holding)
        await c.execute(
            "INSERT INTO search_terms (term, object_id, chunks) SELECT t, ?, n FROM unnest(?::text[], ?::int[]) AS u(t, n)",
            obj.id, terms, [holding[t] for t in terms],
        )
        await c.execute("INSERT INTO search_lexicon (term) SELECT unnest(?::text[]) ON CONFLICT DO NOTHING", terms)
    if vectors is not None:
        await c.executemany("INSERT INTO search_vectors (id, vector) VALUES (?, ?)", [(first + n, v) for n, v in enumerate(vectors)])
    await c.execute("INSERT INTO search_log (object_id) VALUES (?)", obj.id)


_UPGRADE_LOCK = 0x1970_0031  # any constant: the key of the advisory lock held while upgrading


async def upgrade_legacy_index(raw: asyncpg.Connection) -> int:
    """Copy the index of engines before migration 0031 (``chunk_index``, ``chunk_vectors``)
    into the folded index and drop the old tables; return the objects moved. Asyncio side."""
    if not await raw.fetchval("SELECT to_regclass('chunk_index') IS NOT NULL"):
        return 0
    # Several processes may start at once: one copies, the others find the table gone. A
    # lock on the table itself fails in those others when it is dropped before they take it.
    # The lock is taken *before* the transaction begins: a transaction that was open while
    # another process dropped the table still finds it by name (its catalog cache is only
    # refreshed at its start or by a lock on a table, not by an advisory lock) and fails with
    # "relation does not exist" (tests/store/test_postgres_startup.py).
    await raw.execute("SELECT pg_advisory_lock($1)", _UPGRADE_LOCK)
    try:
        return await _upgrade_legacy_index(raw)
    finally:
        await raw.execute("SELECT pg_advisory_unlock($1)", _UPGRADE_LOCK)


async def _upgrade_legacy_index(raw: asyncpg.Connection) -> int:
    c = PgConn(raw)
    async with raw.transaction():
        if not await raw.fetchval("SELECT to_regclass('chunk_index') IS NOT NULL"):
            return 0
        objects = [r[0] for r in await raw.fetch("SELECT DISTINCT object_id FROM chunk_index")]
        for object_id in objects:
            row = await raw.fetchrow("SELECT id, tenant_id, dataset_id, created_at FROM objects WHERE id = $1", object_id)
            if row is None:
                continue
            texts = await raw.fetch("SELECT chunk_no, text FROM chunk_index WHERE object_id = $1 ORDER BY chunk_no", object_id)
            vecs = {r[0]: r[1] for r in await raw.fetch("SELECT chunk_no, vector FROM chunk_vectors WHERE object_id = $1", object_id)}
            vectors = [vecs[r[0]] for r in texts] if vecs and all(r[0] in vecs for r in texts) else None
            obj = ObjectRecord(row["id"], row["tenant_id"], row["dataset_id"], "", "", "", "", 0, None, None, "", "",
                               row["created_at"], row["created_at"])
            rows, holding, tokens = _rows(obj, [r[1] for r in texts])
            await write_index(c, obj, rows, holding, tokens, vectors)
        await raw.execute("DROP TABLE chunk_index")
        await raw.execute("DROP TABLE IF EXISTS chunk_vectors")
    return len(objects)



async def _lexical(c: PgConn, root: Node, dataset_seqs: Sequence[int], limit: int) -> list[tuple[int, float]]:
    scored = scored_units(root)
    stats = await c.fetchrow("SELECT coalesce(sum(chunks), 0) AS n, coalesce(sum(tokens), 0) AS tokens FROM search_objects")
    assert stats is not None
    n_rows, n_tokens = int(stats["n"]), int(stats["tokens"])
    if n_rows == 0:
        return []
    words = [t for t in scored if not t.endswith("*") and " " not in t]
    hits = dict(await c.fetch(
        "SELECT term, sum(chunks)::bigint FROM search_terms WHERE term = ANY(?::text[]) GROUP BY term", list(set(words))
    ))
    # A prefix or a phrase: the chunks holding it, counted over the whole index as FTS5 does.
    for t in sorted(set(scored) - set(words)):
        unit = Prefix(t[:-1]) if t.endswith("*") else Phrase(tuple(t.split(" ")))
        hits[t] = await c.fetchval("SELECT count(*) FROM search_chunks WHERE tsv @@ ?::tsquery", tsquery(unit))
    idfs = [idf(n_rows, int(hits.get(t, 0))) for t in scored]
    avgdl = n_tokens / n_rows
    rows = await c.fetch(
        "SELECT s.id, (SELECT coalesce(sum(q.idf * ((f.tf * (?::float8 + 1.0::float8))"
        "   / (f.tf + ?::float8 * (1.0::float8 - ?::float8 + ?::float8 * s.doc_len::float8 / ?::float8)))), 0::float8)"
        "   FROM unnest(?::text[], ?::float8[], ?::text[]) WITH ORDINALITY AS q(term, idf, prefix, ord),"
        "   LATERAL (SELECT CASE WHEN q.prefix IS NOT NULL THEN (SELECT coalesce(sum(e.value::float8), 0::float8)"
        "           FROM jsonb_each_text(s.tf) e WHERE starts_with(e.key, q.prefix))"
        "     WHEN strpos(q.term, ' ') > 0 THEN ipto_phrase_count(s.tsv, string_to_array(q.term, ' '))::float8"
        "     ELSE coalesce((s.tf ->> q.term)::float8, 0::float8) END AS tf) f) AS score"
        " FROM search_chunks s WHERE s.tsv @@ ?::tsquery AND (s.id >> 40) = ANY(?::bigint[])"
        " ORDER BY score DESC, s.id LIMIT ?",
        K1, K1, B, B, avgdl, scored, idfs, [t[:-1] if t.endswith("*") else None for t in scored], tsquery(root),
        list(dataset_seqs), limit,
    )
    return [(int(r[0]), float(r[1])) for r in rows]


async def _chunk_hits(c: PgConn, ids: Sequence[int]) -> dict[int, ChunkHit]:
    rows = await c.fetch(
        "SELECT c.id, c.object_id, c.chunk_no, c.dataset_id, c.tenant_id, c.text, o.original_filename, o.mime_type, o.status"
        " FROM search_chunks c JOIN objects o ON o.id = c.object_id WHERE c.id = ANY(?::bigint[])", list(ids))
    return {int(r[0]): ChunkHit(int(r[0]), r[1], int(r[2]), r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows}


class SearchMixin(PgAccess):
    """Index writes, lexical queries, the dictionary and the vectors; relies on ``read``/``write``."""

    async def replace_index(self, obj: ObjectRecord, chunks: Sequence[str], vectors: Iterable[bytes] | None) -> None:
        """The object's index entries, replaced whole (so a re-run after a crash never doubles them)."""
        vector_list = None if vectors is None else list(vectors)
        rows, holding, tokens = _rows(obj, chunks)

        async def op(c: PgConn) -> None:
            await write_index(c, obj, rows, holding, tokens, vector_list)

        await self.write(op)

    async def search_chunks(self, tenant_id: str, dataset_id: str, query: str, limit: int = 20) -> list[tuple[str, int, str]]:
        """``(object_id, chunk_no, text)`` of a dataset's chunks holding every word of ``query``, best first."""
        words = index_chunk(query).terms
        if not words:
            return []
        rows = await self.read(
            lambda c: c.fetch(
                "SELECT object_id, chunk_no, text FROM search_chunks WHERE tsv @@ ?::tsquery AND tenant_id = ? AND dataset_id = ?"
                " ORDER BY id LIMIT ?",
                " & ".join(f"'{w}'" for w in words), tenant_id, dataset_id, limit,
            )
        )
        return [(r[0], int(r[1]), r[2]) for r in rows]

    async def count_vectors(self, object_id: str) -> int:
        return int(await self.read(lambda c: c.fetchval(
            "SELECT count(*) FROM search_vectors WHERE id IN (SELECT id FROM search_chunks WHERE object_id = ?)", object_id)))

    # -- queries --------------------------------------------------------------------------
    async def lexical_search(self, root: Node, dataset_seqs: Sequence[int], limit: int) -> list[tuple[int, float]]:
        """``(chunk id, BM25 score)`` of the best ``limit`` chunks of these datasets
        matching the expanded tree, best first (ties: lower id first)."""
        return await self.read(lambda c: _lexical(c, root, dataset_seqs, limit))

    async def lexical_hits(self, root: Node, dataset_seqs: Sequence[int], limit: int) -> tuple[list[tuple[int, float]], dict[int, ChunkHit]]:
        """:meth:`lexical_search` and :meth:`chunk_hits` of its answer on one connection."""

        async def op(c: PgConn) -> tuple[list[tuple[int, float]], dict[int, ChunkHit]]:
            ranked = await _lexical(c, root, dataset_seqs, limit)
            return ranked, await _chunk_hits(c, [chunk_id for chunk_id, _ in ranked]) if ranked else {}

        return await self.read(op)

    async def matching_ids(self, root: Node, dataset_seqs: Sequence[int]) -> set[int]:
        """Ids of every chunk of these datasets matching the expanded tree (constraints of vector search)."""
        rows = await self.read(lambda c: c.fetch(
            "SELECT id FROM search_chunks WHERE tsv @@ ?::tsquery AND (id >> 40) = ANY(?::bigint[])", tsquery(root), list(dataset_seqs)))
        return {int(r[0]) for r in rows}

    async def filter_matching(self, ids: Sequence[int], root: Node) -> set[int]:
        """Those of ``ids`` that match ``root``: primary-key lookups, the tsquery tested on each row."""
        if not ids:
            return set()
        rows = await self.read(lambda c: c.fetch(
            "SELECT id FROM search_chunks WHERE id = ANY(?::bigint[]) AND tsv @@ ?::tsquery", list(ids), tsquery(root)))
        return {int(r[0]) for r in rows}

    async def expand_terms(self, low: str, high: str | None, match: Callable[[str], bool], limit: int) -> list[str] | None:
        """Terms of the dictionary in ``[low, high)`` that ``match`` accepts, in order; None
        when more than ``limit`` do."""
        sql = ("SELECT l.term FROM search_lexicon l WHERE l.term >= ?" + ("" if high is None else " AND l.term < ?")
               + " AND EXISTS (SELECT 1 FROM search_terms t WHERE t.term = l.term) ORDER BY l.term")
        args = [low] if high is None else [low, high]

        async def op(c: PgConn) -> list[str] | None:
            found: list[str] = []
            async for record in c.raw.cursor(numbered(sql), *args, prefetch=2000):
                term = record[0]
                if match(term):
                    found.append(term)
                    if len(found) > limit:
                        return None
            return found

        return await self.read(op)

    async def count_terms(self, low: str, high: str | None, limit: int) -> int:
        """How many dictionary terms are in ``[low, high)``, counting no further than ``limit``."""
        sql = ("SELECT count(*) FROM (SELECT 1 FROM search_lexicon l WHERE l.term >= ?" + ("" if high is None else " AND l.term < ?")
               + " AND EXISTS (SELECT 1 FROM search_terms t WHERE t.term = l.term) LIMIT ?) AS found")
        args = [low, limit] if high is None else [low, high, limit]
        return int(await self.read(lambda c: c.fetchval(sql, *args)))

    async def chunk_hits(self, ids: Sequence[int]) -> dict[int, ChunkHit]:
        return await self.read(lambda c: _chunk_hits(c, ids))

    # -- vectors ----------------------------------------------------------------------------
    async def index_log_head(self) -> int:
        return int(await self.read(lambda c: c.fetchval("SELECT coalesce(max(seq), 0) FROM search_log")))

    async def index_changes(self, after: int, limit: int = 10_000) -> list[tuple[int, str]]:
        rows = await self.read(lambda c: c.fetch("SELECT seq, object_id FROM search_log WHERE seq > ? ORDER BY seq LIMIT ?", after, limit))
        return [(int(r[0]), r[1]) for r in rows]

    async def object_vectors(self, object_ids: Sequence[str]) -> dict[str, list[tuple[int, bytes]]]:
        rows = await self.read(lambda c: c.fetch(
            "SELECT c.object_id, v.id, v.vector FROM search_chunks c JOIN search_vectors v ON v.id = c.id"
            " WHERE c.object_id = ANY(?::text[])", list(object_ids)))
        out: dict[str, list[tuple[int, bytes]]] = {o: [] for o in object_ids}
        for object_id, chunk_id, vector in rows:
            out[object_id].append((int(chunk_id), bytes(vector)))
        return out

    async def vector_count(self) -> int:
        return int(await self.read(lambda c: c.fetchval("SELECT count(*) FROM search_vectors")))

    async def vector_page(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        rows = await self.read(lambda c: c.fetch(
            "SELECT v.id, c.object_id, v.vector FROM search_vectors v JOIN search_chunks c ON c.id = v.id"
            " WHERE v.id > ? ORDER BY v.id LIMIT ?", after_id, limit))
        return [(int(r[0]), r[1], bytes(r[2])) for r in rows]

    async def vectors_for(self, ids: Sequence[int]) -> dict[int, bytes]:
        rows = await self.read(lambda c: c.fetch("SELECT id, vector FROM search_vectors WHERE id = ANY(?::bigint[])", list(ids)))
        return {int(r[0]): bytes(r[1]) for r in rows}
