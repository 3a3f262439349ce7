-- V4 record imports: import jobs in per-dataset arrival order, and the accepted records
-- (PostgreSQL; mirrors sqlite/0004).

CREATE TABLE imports (
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL REFERENCES tenants(id),
    dataset_id        text NOT NULL REFERENCES datasets(id),
    filename          text NOT NULL,
    format            text NOT NULL,            -- jsonl | csv
    status            text NOT NULL,            -- uninitialised | queued | processing | complete | partial | failed | pending_schema
    arrival           bigint,                   -- place in the dataset's queue, fixed when the bytes arrive
    size_bytes        bigint,
    accepted_count    bigint NOT NULL DEFAULT 0,
    rejected_count    bigint NOT NULL DEFAULT 0,
    errors_kept       bigint NOT NULL DEFAULT 0, -- rows in import_errors (at most 1,000)
    reason            text,
    checkpoint_offset bigint NOT NULL DEFAULT 0, -- bytes of the file fully processed and committed
    checkpoint_line   bigint NOT NULL DEFAULT 0,
    parsed_count      bigint NOT NULL DEFAULT 0, -- records that parsed (accepted or schema-rejected)
    expires_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL,
    received_at       timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz
);
CREATE INDEX imports_dataset ON imports(dataset_id, seq);
CREATE INDEX imports_queue ON imports(dataset_id, status, arrival);
-- A place in a dataset's queue is given once: the last place is one index probe, and two
-- writers that both took it could never both commit.
CREATE UNIQUE INDEX imports_arrival ON imports(dataset_id, arrival);

-- The first 1,000 rejected records of each import.
CREATE TABLE import_errors (
    import_id  text NOT NULL,
    line       bigint NOT NULL,
    field      text,
    message    text NOT NULL
);
CREATE INDEX import_errors_import ON import_errors(import_id, line);

-- Accepted records, stored a committed batch per row: one row insert per ~2,000 records
-- instead of 2,000 (the per-row cost dominated imports). Records are single-line JSON
-- joined by newlines, their file line numbers alongside; a datapoint's cursor position is
-- (chunk seq << 16) | index in chunk. A chunk (~1 MiB) is always TOASTed: lz4 compresses
-- it in a third to a half of the time pglz takes, which was most of a batch's commit.
CREATE TABLE datapoint_chunks (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset_id  text NOT NULL REFERENCES datasets(id),
    import_id   text NOT NULL,
    count       integer NOT NULL,
    lines       bigint[] NOT NULL,                -- file line numbers
    records     text COMPRESSION lz4 NOT NULL     -- the records, JSON, one per line
);
CREATE INDEX datapoint_chunks_dataset ON datapoint_chunks(dataset_id, seq);
