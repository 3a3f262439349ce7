-- Webhooks (API.md "Webhooks"): a tenant's endpoints, the outbox of events, one delivery
-- per (event, endpoint) written in the same transaction as the change the event reports,
-- and each delivery's attempts (the delivery log).

CREATE TABLE webhooks (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,         -- wh_…
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    url                  TEXT NOT NULL,
    events               TEXT NOT NULL,                -- JSON array as given (["*"] = every event)
    event_filter         TEXT NOT NULL,                -- ',a,b,' : what the outbox matches an event type against
    description          TEXT,
    status               TEXT NOT NULL,                -- enabled | disabled
    disabled_reason      TEXT,                         -- gone (410) | failing (3 days) | manual
    secret_sealed        BLOB NOT NULL,                -- AES-GCM under a key derived from the server secret
    previous_secret_sealed BLOB,                       -- after a rotation: still signs until ...
    previous_secret_expires_at TEXT,
    failing_since        TEXT,                         -- first failed attempt since the last success
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
) STRICT;
CREATE INDEX webhooks_tenant ON webhooks(tenant_id, status);

CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,                     -- evt_… (the webhook-id header)
    tenant_id   TEXT NOT NULL,
    type        TEXT NOT NULL,
    body        BLOB NOT NULL,                        -- the exact bytes sent: {type, timestamp, data}
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,            -- dlv_…
    webhook_id       TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    status           TEXT NOT NULL,                   -- pending | succeeded | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,                            -- when pending
    lease_owner      TEXT,
    lease_until      TEXT,
    last_attempt_at  TEXT,
    last_status_code INTEGER,
    last_error       TEXT,
    last_duration_ms REAL,
    created_at       TEXT NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, seq);

CREATE TABLE webhook_attempts (
    delivery_id   TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    status_code   INTEGER,
    duration_ms   REAL NOT NULL,
    error         TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (delivery_id, attempt)
) STRICT;
