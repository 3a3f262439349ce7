-- Identity, API keys, datasets and idempotency keys (PostgreSQL; mirrors sqlite/0001).
-- Every table that is listed by cursor has a `seq` identity: cursors are positions in it,
-- so pages stay stable while rows are inserted concurrently.

CREATE TABLE tenants (
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE users (
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                 text PRIMARY KEY,
    email              text NOT NULL UNIQUE,
    name               text,
    password_hash      text NOT NULL,
    is_platform_admin  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL
);

CREATE TABLE memberships (
    tenant_id   text NOT NULL REFERENCES tenants(id),
    user_id     text NOT NULL REFERENCES users(id),
    role        text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);

CREATE TABLE sessions (
    token_hash  text PRIMARY KEY,      -- SHA-256 of the opaque token; the token itself is never stored
    user_id     text NOT NULL REFERENCES users(id),
    tenant_id   text NOT NULL REFERENCES tenants(id),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE api_keys (
    seq                  bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                   text PRIMARY KEY,
    tenant_id            text NOT NULL REFERENCES tenants(id),
    user_id              text NOT NULL REFERENCES users(id),
    name                 text NOT NULL,
    prefix               text NOT NULL UNIQUE,
    secret_hash          text NOT NULL,  -- SHA-256 of the secret part
    scopes               text NOT NULL,  -- JSON array
    dataset_access_mode  text NOT NULL,
    dataset_ids          text NOT NULL,  -- JSON array
    created_at           timestamptz NOT NULL,
    last_used_at         timestamptz,
    revoked_at           timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id, seq);

CREATE TABLE datasets (
    seq                    bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                     text PRIMARY KEY,
    tenant_id              text NOT NULL REFERENCES tenants(id),
    name                   text NOT NULL,
    description            text,
    source_modality        text NOT NULL,
    monetization_mode      text NOT NULL,
    pricing_model          text NOT NULL,
    visibility             text NOT NULL,
    status                 text NOT NULL,
    object_count           bigint NOT NULL DEFAULT 0,
    active_object_count    bigint NOT NULL DEFAULT 0,
    total_bytes            bigint NOT NULL DEFAULT 0,
    total_datapoint_count  bigint NOT NULL DEFAULT 0,
    last_ingest_at         timestamptz,
    record_schema          text,          -- JSON Schema of imported records (JSON text)
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);
CREATE INDEX datasets_tenant ON datasets(tenant_id, seq);
CREATE INDEX datasets_visibility ON datasets(visibility, seq);

CREATE TABLE idempotency_keys (
    principal    text NOT NULL,
    key          text NOT NULL,
    fingerprint  text NOT NULL,          -- SHA-256 of method, path and body
    state        text NOT NULL,          -- in_progress | done
    status_code  integer,
    response     bytea,                  -- AES-GCM sealed, keyed by the server secret and the key itself
    created_at   timestamptz NOT NULL,
    locked_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);
