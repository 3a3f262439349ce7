-- The search index, folded by the engine (engine/market/text.py) so both backends index
-- and query the very same terms (mirrors sqlite/0031). The tsvector is built by the engine
-- from its own tokens and positions (never by PostgreSQL's parser), so phrase and
-- proximity positions agree with SQLite's. BM25 needs what a tsvector does not give
-- cheaply: each chunk's term frequencies (tf) and length, every term's document
-- frequency (search_terms, one row per term and object: no hot counter rows) and the
-- index's size (search_objects). A chunk's id is (dataset seq << 40) | n.
-- The old chunk_index / chunk_vectors are copied over (folded) and dropped at start-up
-- by the store (engine/store/postgres/search.py: upgrade_legacy_index).

CREATE TABLE search_chunks (
    id          bigint PRIMARY KEY,
    object_id   text NOT NULL,
    chunk_no    bigint NOT NULL,
    dataset_id  text NOT NULL,
    tenant_id   text NOT NULL,
    text        text NOT NULL,
    tsv         tsvector NOT NULL,
    tf          jsonb NOT NULL,          -- {term: occurrences}
    doc_len     integer NOT NULL,        -- terms in the chunk
    UNIQUE (object_id, chunk_no)
);
CREATE INDEX search_chunks_tsv ON search_chunks USING gin (tsv);

CREATE TABLE search_objects (
    object_id   text PRIMARY KEY,
    chunks      bigint NOT NULL,
    tokens      bigint NOT NULL
);

CREATE TABLE search_terms (
    term        text COLLATE "C" NOT NULL,
    object_id   text NOT NULL,
    chunks      integer NOT NULL,        -- chunks of the object holding the term
    PRIMARY KEY (term, object_id)
);
CREATE INDEX search_terms_object ON search_terms(object_id);

-- Every term ever indexed (insert-only): the dictionary wildcards and regular expressions
-- scan; a term is used only while search_terms still has it.
CREATE TABLE search_lexicon (
    term        text COLLATE "C" PRIMARY KEY
);

CREATE TABLE search_vectors (
    id      bigint PRIMARY KEY,
    vector  bytea NOT NULL
);

CREATE TABLE search_log (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_id   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
