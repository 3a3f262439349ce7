-- Objects, their upload sessions and the parts received for them.

CREATE TABLE objects (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    dataset_id         TEXT NOT NULL REFERENCES datasets(id),
    blob_id            TEXT NOT NULL UNIQUE,
    upload_id          TEXT NOT NULL,
    original_filename  TEXT NOT NULL,
    mime_type          TEXT NOT NULL,
    size_bytes         INTEGER NOT NULL,
    declared_sha256    TEXT,                 -- what the client said, if anything
    checksum_sha256    TEXT,                 -- what the server computed
    status             TEXT NOT NULL,
    review_state       TEXT NOT NULL,
    failure_reason     TEXT,
    latest_job_id      TEXT,
    plain_text         INTEGER NOT NULL DEFAULT 0,
    ocr_blocks         INTEGER NOT NULL DEFAULT 0,
    chunk_embeddings   INTEGER NOT NULL DEFAULT 0,
    review_deadline    TEXT,
    created_at         TEXT NOT NULL,
    uploaded_at        TEXT,
    updated_at         TEXT NOT NULL,
    deleted_at         TEXT
) STRICT;
CREATE INDEX objects_dataset ON objects(dataset_id, seq);
CREATE INDEX objects_tenant ON objects(tenant_id, seq);

CREATE TABLE uploads (
    id               TEXT PRIMARY KEY,
    object_id        TEXT NOT NULL REFERENCES objects(id),
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    dataset_id       TEXT NOT NULL REFERENCES datasets(id),
    strategy         TEXT NOT NULL,          -- single_part | multipart
    part_size_bytes  INTEGER NOT NULL,
    part_count       INTEGER NOT NULL,
    state            TEXT NOT NULL,          -- pending | completed | abandoned | cancelled
    expires_at       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    completed_at     TEXT
) STRICT;
CREATE INDEX uploads_pending ON uploads(state, expires_at);

CREATE TABLE upload_parts (
    upload_id    TEXT NOT NULL REFERENCES uploads(id),
    part_number  INTEGER NOT NULL,
    file_name    TEXT NOT NULL,              -- unique per PUT: a late PUT never alters what was confirmed
    size_bytes   INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) STRICT;
