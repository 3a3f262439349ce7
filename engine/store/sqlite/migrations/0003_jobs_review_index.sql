-- Jobs (pipeline runs, later imports), review bookkeeping and the search index.

CREATE TABLE jobs (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    dataset_id   TEXT NOT NULL REFERENCES datasets(id),
    type         TEXT NOT NULL,             -- pipeline | import
    object_id    TEXT,
    import_id    TEXT,
    status       TEXT NOT NULL,             -- queued | running | succeeded | failed
    stage        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0, -- failed attempts of the current stage
    error        TEXT,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT
) STRICT;
CREATE INDEX jobs_unfinished ON jobs(status) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_object ON jobs(object_id);

ALTER TABLE objects ADD COLUMN review_reason TEXT;
ALTER TABLE objects ADD COLUMN reviewed_at TEXT;
ALTER TABLE objects ADD COLUMN reviewed_by TEXT;
ALTER TABLE objects ADD COLUMN normalized_mime_type TEXT;
ALTER TABLE objects ADD COLUMN keywords TEXT;           -- JSON array
CREATE INDEX objects_review_deadline ON objects(review_deadline) WHERE review_state = 'staged';
CREATE INDEX objects_review_queue ON objects(review_state, seq);

-- Full-text index of every chunk of every active object, and the chunk embeddings beside it.
CREATE VIRTUAL TABLE chunk_index USING fts5(
    text,
    object_id UNINDEXED,
    dataset_id UNINDEXED,
    tenant_id UNINDEXED,
    chunk_no UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE chunk_vectors (
    object_id   TEXT NOT NULL,
    chunk_no    INTEGER NOT NULL,
    dataset_id  TEXT NOT NULL,
    vector      BLOB NOT NULL,                -- float32, L2-normalised
    PRIMARY KEY (object_id, chunk_no)
) STRICT;
