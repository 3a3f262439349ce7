-- The server secret (presigned URL signatures, sealed idempotency answers) when several
-- engine processes share this database: they must all sign and seal with the same key.
-- The first process to start stores its own; the others adopt it.
CREATE TABLE server_secret (
    id          integer PRIMARY KEY CHECK (id = 1),
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
