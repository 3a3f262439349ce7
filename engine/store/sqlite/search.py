"""The search index in SQLite: FTS5 over the engine's folded terms, vectors beside it.

* A chunk's id is ``(dataset seq << 40) | n``: a search limited to some datasets is a
  rowid range FTS5 seeks to (and, when datasets inside the range are left out, a test of
  ``rowid >> 40`` inside the FTS5 scan, which reads no row); see :func:`_scope`.
* Lexical queries are compiled from the parsed tree (:mod:`engine.market.query`) to an
  FTS5 expression. The score is BM25 (FTS5's ``bm25()``: k1 = 1.2, b = 0.75, the IDF and
  average length of the whole index) summed over the query's scored units
  (:func:`engine.market.query.scored_units`): an exact phrase is one unit, as FTS5 scores
  it. Without a proximity that is ``bm25()`` of the query itself, one FTS5 cursor; a
  proximity (``NEAR``) filters with the query and ranks with a second cursor over the
  AND (or OR) of the units, so its words score as words, exactly as on PostgreSQL.
* A plain prefix (:class:`engine.market.query.Prefix`) is FTS5's own prefix query
  ``"abcd"*``: one phrase to ``bm25()`` (its occurrences summed, the IDF of the chunks
  holding any of its terms), which PostgreSQL computes alike.
* The dictionary wildcards and regular expressions expand over is ``fts5vocab``.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import orjson

from engine.market.match import Positions, matches
from engine.market.query import And, Node, Not, Or, Phrase, Prefix, Term, Terms, scored_as_written, scored_units
from engine.market.text import index_chunk
from engine.store.records import ObjectRecord
from engine.store.search import DATASET_SHIFT, ChunkHit, chunk_id_range, next_chunk_id
from engine.store.sqlite.access import SqliteAccess
from engine.store.sqlite.sqltime import ts


def fts5_expression(node: Node) -> str:
    """The FTS5 MATCH expression of an expanded, non-empty tree (terms are quoted; the
    engine's terms are letters and digits only, so no quote ever needs escaping)."""
    if isinstance(node, Term):
        return f'"{node.term}"'
    if isinstance(node, Prefix):
        return f'"{node.prefix}"*'
    if isinstance(node, Terms):
        return "(" + " OR ".join(f'"{t}"' for t in node.terms) + ")"
    if isinstance(node, Phrase):
        if node.slop == 0:
            return '"' + " ".join(node.terms) + '"'
        words = list(dict.fromkeys(node.terms))
        if len(words) == 1:
            return f'"{words[0]}"'
        # FTS5's NEAR counts the tokens *between*: at most slop - 1 means at most slop apart.
        near = [f'NEAR("{a}" "{b}", {node.slop - 1})' for a, b in itertools.combinations(words, 2)]
        return "(" + " AND ".join(near) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(fts5_expression(item) for item in node.items) + ")"
    if isinstance(node, And):
        positive = [item for item in node.items if not isinstance(item, Not)]
        text = "(" + " AND ".join(f"({fts5_expression(item)})" for item in positive) + ")"
        for item in node.items:
            if isinstance(item, Not):
                text = f"({text} NOT ({fts5_expression(item.item)}))"
        return text
    raise TypeError(f"cannot compile {type(node).__name__} to FTS5")


def _scope(dataset_seqs: Sequence[int]) -> tuple[str, tuple[object, ...]]:
    """The WHERE terms (and their parameters) keeping FTS5's rows to these datasets.

    The chunk ids of the datasets from the lowest seq to the highest are one rowid range,
    which FTS5 takes as its own constraint: every doclist is read from the range's start
    and stops at its end, so a dataset that is a tenth of the index is searched ~1.6× faster
    than by testing each match's dataset, and one that is all of it a little faster still.
    Only when some dataset inside the range is not searched is each row's dataset tested too."""
    seqs = sorted(set(dataset_seqs))
    if not seqs:
        return "0", ()  # no dataset: no row
    bounds = chunk_id_range(seqs[0], seqs[-1])
    if seqs[-1] - seqs[0] + 1 == len(seqs):
        return "rowid >= ? AND rowid < ?", bounds
    return (f"rowid >= ? AND rowid < ? AND (rowid >> {DATASET_SHIFT}) IN (SELECT value FROM json_each(?))",
            (*bounds, orjson.dumps(seqs).decode()))


def _lexical(c: sqlite3.Connection, root: Node, dataset_seqs: Sequence[int], limit: int) -> list[tuple[int, float]]:
    scope, scope_params = _scope(dataset_seqs)
    expression = fts5_expression(root)
    if scored_as_written(root):
        sql = (f"SELECT rowid, -bm25(search_fts) FROM search_fts WHERE search_fts MATCH ? AND {scope}"
               " ORDER BY bm25(search_fts), rowid LIMIT ?")
        params: tuple[object, ...] = (expression, *scope_params, limit)
    else:
        # "+rowid": the filter's rowids are gathered once and tested per row; a plain
        # "rowid IN" would let FTS5 look each one up with the MATCH, re-running it per row.
        # bm25() sums over the ranking expression's phrases whatever joins them, so when
        # every match holds every scored unit (a proximity, a conjunction of proximities
        # and words) their AND gives the same scores as their OR over fewer rows (~30 % less
        # time on two common words).
        joiner = " AND " if _all_terms_required(root) else " OR "
        ranking = joiner.join(_scored_phrase(t) for t in scored_units(root))
        sql = (f"SELECT rowid, -bm25(search_fts) FROM search_fts WHERE search_fts MATCH ? AND {scope}"
               " AND +rowid IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)"
               " ORDER BY bm25(search_fts), rowid LIMIT ?")
        params = (ranking, *scope_params, expression, limit)
    return [(int(r[0]), float(r[1])) for r in c.execute(sql, params).fetchall()]


def _scored_phrase(term: str) -> str:
    """One of :func:`scored_units` as an FTS5 phrase (``abcd*`` is a prefix; ``a b`` the phrase)."""
    return f'"{term[:-1]}"*' if term.endswith("*") else f'"{term}"'


def _all_terms_required(node: Node) -> bool:
    """Whether every chunk matching ``node`` holds each of its positive terms."""
    if isinstance(node, (Term, Phrase, Prefix)):
        return True
    if isinstance(node, Terms):
        return len(node.terms) == 1
    if isinstance(node, And):
        return all(isinstance(item, Not) or _all_terms_required(item) for item in node.items)
    if isinstance(node, Or):
        return len(node.items) == 1 and _all_terms_required(node.items[0])
    return False


def _chunk_hits(c: sqlite3.Connection, ids: Sequence[int]) -> dict[int, ChunkHit]:
    rows = c.execute(
        "SELECT c.id, c.object_id, c.chunk_no, c.dataset_id, c.tenant_id, c.text, o.original_filename, o.mime_type, o.status"
        " FROM search_chunks c JOIN objects o ON o.id = c.object_id WHERE c.id IN (SELECT value FROM json_each(?))",
        (orjson.dumps(list(ids)).decode(),),
    ).fetchall()
    return {int(r[0]): ChunkHit(int(r[0]), r[1], int(r[2]), r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows}


def remove_index(c: sqlite3.Connection, object_id: str, now: datetime) -> None:
    """Drop an object's chunks and vectors (the triggers update FTS5) and log the change."""
    c.execute("DELETE FROM search_vectors WHERE id IN (SELECT id FROM search_chunks WHERE object_id = ?)", (object_id,))
    if c.execute("DELETE FROM search_chunks WHERE object_id = ?", (object_id,)).rowcount:
        c.execute("INSERT INTO search_log (object_id, created_at) VALUES (?, ?)", (object_id, ts(now)))


def _write_index(c: sqlite3.Connection, obj: ObjectRecord, chunks: Sequence[str], vectors: Sequence[bytes] | None, now: datetime) -> None:
    remove_index(c, obj.id, now)
    (dataset_seq,) = c.execute("SELECT seq FROM datasets WHERE id = ?", (obj.dataset_id,)).fetchone()
    (top,) = c.execute("SELECT max(id) FROM search_chunks WHERE id >= ? AND id < ?", chunk_id_range(dataset_seq)).fetchone()
    first = next_chunk_id(dataset_seq, top)
    rows = []
    for n, text in enumerate(chunks):
        indexed = index_chunk(text)
        rows.append((first + n, obj.id, n, obj.dataset_id, obj.tenant_id, text, indexed.terms_text))
    c.executemany(
        "INSERT INTO search_chunks (id, object_id, chunk_no, dataset_id, tenant_id, text, terms) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
    )
    if vectors is not None:
        c.executemany("INSERT INTO search_vectors (id, vector) VALUES (?, ?)", [(first + n, v) for n, v in enumerate(vectors)])
    c.execute("INSERT INTO search_log (object_id, created_at) VALUES (?, ?)", (obj.id, ts(now)))


def upgrade_legacy_index(c: sqlite3.Connection) -> int:
    """Copy the index of engines before migration 0031 (unfolded FTS5 ``chunk_index`` and
    ``chunk_vectors``) into the folded index, then drop the old tables; return the objects moved."""
    if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunk_index'").fetchone() is None:
        return 0
    c.execute("BEGIN IMMEDIATE")
    try:
        objects = [r[0] for r in c.execute("SELECT DISTINCT object_id FROM chunk_index")]
        now = datetime.now().astimezone()
        for object_id in objects:
            row = c.execute("SELECT * FROM objects WHERE id = ?", (object_id,)).fetchone()
            if row is None:
                continue
            texts = c.execute("SELECT chunk_no, text FROM chunk_index WHERE object_id = ? ORDER BY CAST(chunk_no AS INTEGER)", (object_id,)).fetchall()
            vecs = dict(c.execute("SELECT chunk_no, vector FROM chunk_vectors WHERE object_id = ?", (object_id,)).fetchall())
            vectors = [vecs[int(n)] for n, _ in texts] if vecs and all(int(n) in vecs for n, _ in texts) else None
            obj = ObjectRecord(row["id"], row["tenant_id"], row["dataset_id"], "", "", "", "", 0, None, None, "", "", now, now)
            _write_index(c, obj, [t for _, t in texts], vectors, now)
        c.execute("DROP TABLE chunk_index")
        c.execute("DROP TABLE IF EXISTS chunk_vectors")
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise
    return len(objects)


class SearchMixin(SqliteAccess):
    """Index writes, lexical queries, the dictionary and the vectors; relies on ``read``/``write``."""

    async def replace_index(self, obj: ObjectRecord, chunks: Sequence[str], vectors: Iterable[bytes] | None) -> None:
        """The object's index entries, replaced whole (so a re-run after a crash never doubles them)."""
        vector_list = None if vectors is None else list(vectors)
        now = datetime.now().astimezone()
        await self.write(lambda c: _write_index(c, obj, chunks, vector_list, now))

    async def search_chunks(self, tenant_id: str, dataset_id: str, query: str, limit: int = 20) -> list[tuple[str, int, str]]:
        """``(object_id, chunk_no, text)`` of a dataset's chunks holding every word of ``query``
        (plain words; the query language is :mod:`engine.market.query`'s), best first."""
        words = index_chunk(query).terms
        if not words:
            return []
        expression = " AND ".join(f'"{w}"' for w in words)
        rows = await self.read(
            lambda c: c.execute(
                "SELECT c.object_id, c.chunk_no, c.text FROM search_fts f JOIN search_chunks c ON c.id = f.rowid"
                " WHERE search_fts MATCH ? AND c.tenant_id = ? AND c.dataset_id = ? ORDER BY bm25(search_fts), f.rowid LIMIT ?",
                (expression, tenant_id, dataset_id, limit),
            ).fetchall()
        )
        return [(r[0], int(r[1]), r[2]) for r in rows]

    async def count_vectors(self, object_id: str) -> int:
        row = await self.read(
            lambda c: c.execute(
                "SELECT count(*) FROM search_vectors WHERE id IN (SELECT id FROM search_chunks WHERE object_id = ?)", (object_id,)
            ).fetchone()
        )
        return int(row[0])

    # -- queries --------------------------------------------------------------------------
    async def lexical_search(self, root: Node, dataset_seqs: Sequence[int], limit: int) -> list[tuple[int, float]]:
        """``(chunk id, BM25 score)`` of the best ``limit`` chunks of these datasets
        matching the expanded tree, best first (ties: lower id first)."""
        return await self.read(lambda c: _lexical(c, root, dataset_seqs, limit))

    async def lexical_hits(self, root: Node, dataset_seqs: Sequence[int], limit: int) -> tuple[list[tuple[int, float]], dict[int, ChunkHit]]:
        """:meth:`lexical_search` and :meth:`chunk_hits` of its answer in one read (one
        worker-thread round trip and one snapshot instead of two)."""

        def op(c: sqlite3.Connection) -> tuple[list[tuple[int, float]], dict[int, ChunkHit]]:
            ranked = _lexical(c, root, dataset_seqs, limit)
            return ranked, _chunk_hits(c, [chunk_id for chunk_id, _ in ranked]) if ranked else {}

        return await self.read(op)

    async def matching_ids(self, root: Node, dataset_seqs: Sequence[int]) -> set[int]:
        """Ids of every chunk of these datasets matching the expanded tree (constraints of vector search)."""
        scope, scope_params = _scope(dataset_seqs)
        expression = fts5_expression(root)
        rows = await self.read(
            lambda c: c.execute(f"SELECT rowid FROM search_fts WHERE search_fts MATCH ? AND {scope}", (expression, *scope_params)).fetchall()
        )
        return {int(r[0]) for r in rows}

    async def filter_matching(self, ids: Sequence[int], root: Node) -> set[int]:
        """Those of ``ids`` that match ``root``, decided from each chunk's folded terms (the
        text FTS5 indexes) by :func:`engine.market.match.matches`: a few hundred short rows,
        where an FTS5 query would walk the whole doclist of a common word."""
        if not ids:
            return set()
        wanted = orjson.dumps(list(ids)).decode()
        rows = await self.read(
            lambda c: c.execute("SELECT id, terms FROM search_chunks WHERE id IN (SELECT value FROM json_each(?))", (wanted,)).fetchall()
        )
        return {int(r[0]) for r in rows if matches(root, Positions(r[1]))}

    async def expand_terms(self, low: str, high: str | None, match: Callable[[str], bool], limit: int) -> list[str] | None:
        """Terms of the dictionary in ``[low, high)`` that ``match`` accepts, in order; None
        when more than ``limit`` do."""

        def op(c: sqlite3.Connection) -> list[str] | None:
            if high is None:
                cursor = c.execute("SELECT term FROM search_vocab WHERE term >= ?", (low,))
            else:
                cursor = c.execute("SELECT term FROM search_vocab WHERE term >= ? AND term < ?", (low, high))
            found: list[str] = []
            for (term,) in cursor:
                if match(term):
                    found.append(term)
                    if len(found) > limit:
                        return None
            return found

        return await self.read(op)

    async def count_terms(self, low: str, high: str | None, limit: int) -> int:
        """How many dictionary terms are in ``[low, high)``, counting no further than ``limit``."""
        sql = "SELECT count(*) FROM (SELECT 1 FROM search_vocab WHERE term >= ?" + ("" if high is None else " AND term < ?") + " LIMIT ?)"
        args = (low, limit) if high is None else (low, high, limit)
        row = await self.read(lambda c: c.execute(sql, args).fetchone())
        return int(row[0])

    async def chunk_hits(self, ids: Sequence[int]) -> dict[int, ChunkHit]:
        """The chunks ``ids`` with their objects' names, types and statuses."""
        return await self.read(lambda c: _chunk_hits(c, ids))

    # -- vectors ----------------------------------------------------------------------------
    async def index_log_head(self) -> int:
        row = await self.read(lambda c: c.execute("SELECT coalesce(max(seq), 0) FROM search_log").fetchone(), quick=True)
        return int(row[0])

    async def index_changes(self, after: int, limit: int = 10_000) -> list[tuple[int, str]]:
        """``(seq, object_id)`` of index changes after ``after``, in order."""
        rows = await self.read(
            lambda c: c.execute("SELECT seq, object_id FROM search_log WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        )
        return [(int(r[0]), r[1]) for r in rows]

    async def object_vectors(self, object_ids: Sequence[str]) -> dict[str, list[tuple[int, bytes]]]:
        """Every object's current ``(chunk id, vector)`` (an object with none maps to [])."""
        wanted = orjson.dumps(list(object_ids)).decode()
        rows = await self.read(
            lambda c: c.execute(
                "SELECT c.object_id, v.id, v.vector FROM search_chunks c JOIN search_vectors v ON v.id = c.id"
                " WHERE c.object_id IN (SELECT value FROM json_each(?))",
                (wanted,),
            ).fetchall()
        )
        out: dict[str, list[tuple[int, bytes]]] = {o: [] for o in object_ids}
        for object_id, chunk_id, vector in rows:
            out[object_id].append((int(chunk_id), bytes(vector)))
        return out

    async def vector_count(self) -> int:
        row = await self.read(lambda c: c.execute("SELECT count(*) FROM search_vectors").fetchone())
        return int(row[0])

    async def vector_page(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        """``(chunk id, object_id, vector)`` in id order after ``after_id`` (the cache's first load)."""
        rows = await self.read(
            lambda c: c.execute(
                "SELECT v.id, c.object_id, v.vector FROM search_vectors v JOIN search_chunks c ON c.id = v.id"
                " WHERE v.id > ? ORDER BY v.id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        )
        return [(int(r[0]), r[1], bytes(r[2])) for r in rows]

    async def vectors_for(self, ids: Sequence[int]) -> dict[int, bytes]:
        wanted = orjson.dumps(list(ids)).decode()
        rows = await self.read(
            lambda c: c.execute("SELECT id, vector FROM search_vectors WHERE id IN (SELECT value FROM json_each(?))", (wanted,)).fetchall()
        )
        return {int(r[0]): bytes(r[1]) for r in rows}
