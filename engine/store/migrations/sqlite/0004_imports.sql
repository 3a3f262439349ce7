-- V4 record imports: import jobs in per-dataset arrival order, and the accepted records.

CREATE TABLE imports (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    dataset_id       TEXT NOT NULL REFERENCES datasets(id),
    filename         TEXT NOT NULL,
    format           TEXT NOT NULL,            -- jsonl | csv
    status           TEXT NOT NULL,            -- uninitialised | queued | processing | complete | partial | failed | pending_schema
    arrival          INTEGER,                  -- place in the dataset's queue, fixed when the bytes arrive
    size_bytes       INTEGER,
    accepted_count   INTEGER NOT NULL DEFAULT 0,
    rejected_count   INTEGER NOT NULL DEFAULT 0,
    errors           TEXT NOT NULL DEFAULT '[]', -- the first 1,000 rejections, JSON
    reason           TEXT,
    checkpoint_offset INTEGER NOT NULL DEFAULT 0, -- bytes of the file fully processed and committed
    checkpoint_line  INTEGER NOT NULL DEFAULT 0,
    parsed_count     INTEGER NOT NULL DEFAULT 0,  -- records that parsed (accepted or schema-rejected)
    expires_at       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    received_at      TEXT,
    started_at       TEXT,
    finished_at      TEXT
) STRICT;
CREATE INDEX imports_dataset ON imports(dataset_id, seq);
CREATE INDEX imports_queue ON imports(dataset_id, status, arrival);

CREATE TABLE datapoints (
    seq         INTEGER PRIMARY KEY,
    dataset_id  TEXT NOT NULL REFERENCES datasets(id),
    import_id   TEXT NOT NULL,
    line        INTEGER NOT NULL,
    data        TEXT NOT NULL               -- the record, JSON
) STRICT;
CREATE INDEX datapoints_dataset ON datapoints(dataset_id, seq);
