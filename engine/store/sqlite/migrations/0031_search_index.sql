-- The search index, folded by the engine (engine/market/text.py) so both backends index
-- and query the very same terms: case-folded, accents stripped, split into runs of
-- letters and digits. A chunk's id is (dataset seq << 40) | n, so a search restricted to
-- some datasets filters on the id alone, without reading any row.
-- The old chunk_index / chunk_vectors are copied over (folded) and dropped at start-up
-- by the store (engine/store/sqlite/search.py: upgrade_legacy_index).

CREATE TABLE search_chunks (
    id          INTEGER PRIMARY KEY,
    object_id   TEXT NOT NULL,
    chunk_no    INTEGER NOT NULL,
    dataset_id  TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    text        TEXT NOT NULL,           -- as extracted: snippets are cut from it
    terms       TEXT NOT NULL,           -- the folded terms, space-separated: what FTS5 indexes
    UNIQUE (object_id, chunk_no)
) STRICT;

-- External-content FTS5 over search_chunks.terms; the triggers keep it in step.
CREATE VIRTUAL TABLE search_fts USING fts5(
    terms, content = 'search_chunks', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER search_chunks_insert AFTER INSERT ON search_chunks BEGIN
    INSERT INTO search_fts (rowid, terms) VALUES (new.id, new.terms);
END;
CREATE TRIGGER search_chunks_delete AFTER DELETE ON search_chunks BEGIN
    INSERT INTO search_fts (search_fts, rowid, terms) VALUES ('delete', old.id, old.terms);
END;

-- The term dictionary (wildcards and regular expressions expand over it).
CREATE VIRTUAL TABLE search_vocab USING fts5vocab(search_fts, 'row');

-- Chunk embeddings (float32, L2-normalised), by chunk id. The source of truth of the
-- engine's in-memory vector cache, which follows search_log.
CREATE TABLE search_vectors (
    id      INTEGER PRIMARY KEY,
    vector  BLOB NOT NULL
) STRICT;

-- Objects whose index entries changed (written or removed), in order: the vector cache
-- of every engine process re-reads these objects.
CREATE TABLE search_log (
    seq         INTEGER PRIMARY KEY,
    object_id   TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;
