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
    errors_kept      INTEGER NOT NULL DEFAULT 0, -- rows in import_errors (at most 1,000)
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

-- The first 1,000 rejected records of each import.
CREATE TABLE import_errors (
    import_id  TEXT NOT NULL,
    line       INTEGER NOT NULL,
    field      TEXT,
    message    TEXT NOT NULL
) STRICT;
CREATE INDEX import_errors_import ON import_errors(import_id, line);

-- Accepted records, stored a committed batch per row: one row insert per ~2,000 records
-- instead of 2,000 (the per-row cost dominated imports). Records are single-line JSON
-- joined by newlines, their file line numbers alongside; a datapoint's cursor position is
-- (chunk seq << 16) | index in chunk.
CREATE TABLE datapoint_chunks (
    seq         INTEGER PRIMARY KEY,
    dataset_id  TEXT NOT NULL REFERENCES datasets(id),
    import_id   TEXT NOT NULL,
    count       INTEGER NOT NULL,
    lines       TEXT NOT NULL,              -- JSON array of file line numbers
    records     TEXT NOT NULL               -- the records, JSON, one per line
) STRICT;
CREATE INDEX datapoint_chunks_dataset ON datapoint_chunks(dataset_id, seq);
