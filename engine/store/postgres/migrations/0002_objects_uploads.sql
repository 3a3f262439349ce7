-- Objects, their upload sessions and the parts received for them (PostgreSQL; mirrors sqlite/0002).

CREATE TABLE objects (
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenants(id),
    dataset_id         text NOT NULL REFERENCES datasets(id),
    blob_id            text NOT NULL UNIQUE,
    upload_id          text NOT NULL,
    original_filename  text NOT NULL,
    mime_type          text NOT NULL,
    size_bytes         bigint NOT NULL,
    declared_sha256    text,                 -- what the client said, if anything
    checksum_sha256    text,                 -- what the server computed
    status             text NOT NULL,
    review_state       text NOT NULL,
    failure_reason     text,
    latest_job_id      text,
    plain_text         boolean NOT NULL DEFAULT false,
    ocr_blocks         boolean NOT NULL DEFAULT false,
    chunk_embeddings   boolean NOT NULL DEFAULT false,
    review_deadline    timestamptz,
    created_at         timestamptz NOT NULL,
    uploaded_at        timestamptz,
    updated_at         timestamptz NOT NULL,
    deleted_at         timestamptz
);
CREATE INDEX objects_dataset ON objects(dataset_id, seq);
CREATE INDEX objects_tenant ON objects(tenant_id, seq);

CREATE TABLE uploads (
    id               text PRIMARY KEY,
    object_id        text NOT NULL REFERENCES objects(id),
    tenant_id        text NOT NULL REFERENCES tenants(id),
    dataset_id       text NOT NULL REFERENCES datasets(id),
    strategy         text NOT NULL,          -- single_part | multipart
    part_size_bytes  bigint NOT NULL,
    part_count       integer NOT NULL,       -- at most 10,000
    state            text NOT NULL,          -- pending | completed | abandoned | cancelled
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    completed_at     timestamptz
);
CREATE INDEX uploads_pending ON uploads(state, expires_at);

CREATE TABLE upload_parts (
    upload_id    text NOT NULL REFERENCES uploads(id),
    part_number  integer NOT NULL,
    file_name    text NOT NULL,              -- unique per PUT: a late PUT never alters what was confirmed
    size_bytes   bigint NOT NULL,
    sha256       text NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
