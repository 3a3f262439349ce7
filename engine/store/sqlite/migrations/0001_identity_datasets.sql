-- Identity, API keys, datasets and idempotency keys.
-- Every table that is listed by cursor has an INTEGER PRIMARY KEY `seq`: cursors are
-- positions in it, so pages stay stable while rows are inserted concurrently.
-- Timestamps are ISO 8601 UTC text with microseconds (they sort as text).

CREATE TABLE tenants (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    email              TEXT NOT NULL UNIQUE,
    name               TEXT,
    password_hash      TEXT NOT NULL,
    is_platform_admin  INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL
) STRICT;

CREATE TABLE memberships (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    role        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
) STRICT;
CREATE INDEX memberships_user ON memberships(user_id);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,      -- SHA-256 of the opaque token; the token itself is never stored
    user_id     TEXT NOT NULL REFERENCES users(id),
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE api_keys (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    user_id              TEXT NOT NULL REFERENCES users(id),
    name                 TEXT NOT NULL,
    prefix               TEXT NOT NULL UNIQUE,
    secret_hash          TEXT NOT NULL,  -- SHA-256 of the secret part
    scopes               TEXT NOT NULL,  -- JSON array
    dataset_access_mode  TEXT NOT NULL,
    dataset_ids          TEXT NOT NULL,  -- JSON array
    created_at           TEXT NOT NULL,
    last_used_at         TEXT,
    revoked_at           TEXT
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys(tenant_id, seq);

CREATE TABLE datasets (
    seq                    INTEGER PRIMARY KEY,
    id                     TEXT NOT NULL UNIQUE,
    tenant_id              TEXT NOT NULL REFERENCES tenants(id),
    name                   TEXT NOT NULL,
    description            TEXT,
    source_modality        TEXT NOT NULL,
    monetization_mode      TEXT NOT NULL,
    pricing_model          TEXT NOT NULL,
    visibility             TEXT NOT NULL,
    status                 TEXT NOT NULL,
    object_count           INTEGER NOT NULL DEFAULT 0,
    active_object_count    INTEGER NOT NULL DEFAULT 0,
    total_bytes            INTEGER NOT NULL DEFAULT 0,
    total_datapoint_count  INTEGER NOT NULL DEFAULT 0,
    last_ingest_at         TEXT,
    record_schema          TEXT,          -- JSON Schema of imported records (JSON text)
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
) STRICT;
CREATE INDEX datasets_tenant ON datasets(tenant_id, seq);
CREATE INDEX datasets_visibility ON datasets(visibility, seq);

CREATE TABLE idempotency_keys (
    principal    TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,          -- SHA-256 of method, path and body
    state        TEXT NOT NULL,          -- in_progress | done
    status_code  INTEGER,
    response     BLOB,                   -- AES-GCM sealed, keyed by the server secret and the key itself
    created_at   TEXT NOT NULL,
    locked_at    TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (principal, key)
) STRICT;
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);
