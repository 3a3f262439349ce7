-- Jobs (pipeline runs, later imports), review bookkeeping and the search index
-- (PostgreSQL; mirrors sqlite/0003).

CREATE TABLE jobs (
    seq          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants(id),
    dataset_id   text NOT NULL REFERENCES datasets(id),
    type         text NOT NULL,             -- pipeline | import
    object_id    text,
    import_id    text,
    status       text NOT NULL,             -- queued | running | succeeded | failed
    stage        text,
    attempts     bigint NOT NULL DEFAULT 0, -- failed attempts of the current stage
    error        text,
    created_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX jobs_unfinished ON jobs(status) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_object ON jobs(object_id);

ALTER TABLE objects
    ADD COLUMN review_reason text,
    ADD COLUMN reviewed_at timestamptz,
    ADD COLUMN reviewed_by text,
    ADD COLUMN normalized_mime_type text,
    ADD COLUMN keywords text;                -- JSON array
CREATE INDEX objects_review_deadline ON objects(review_deadline) WHERE review_state = 'staged';
CREATE INDEX objects_review_queue ON objects(review_state, seq);

-- Full-text index of every chunk of every active object, and the chunk embeddings beside it.
-- The 'simple' configuration lower-cases words and neither stems them nor drops stop
-- words, as SQLite's unicode61 tokenizer does (unlike SQLite, it keeps diacritics).
CREATE TABLE chunk_index (
    object_id   text NOT NULL,
    chunk_no    bigint NOT NULL,
    dataset_id  text NOT NULL,
    tenant_id   text NOT NULL,
    text        text NOT NULL,
    tsv         tsvector NOT NULL GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    PRIMARY KEY (object_id, chunk_no)
);
CREATE INDEX chunk_index_tsv ON chunk_index USING gin (tsv);
CREATE INDEX chunk_index_dataset ON chunk_index(dataset_id);

CREATE TABLE chunk_vectors (
    object_id   text NOT NULL,
    chunk_no    bigint NOT NULL,
    dataset_id  text NOT NULL,
    vector      bytea NOT NULL,              -- float32, L2-normalised
    PRIMARY KEY (object_id, chunk_no)
);
