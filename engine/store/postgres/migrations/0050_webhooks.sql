-- Webhooks (API.md "Webhooks"): a tenant's endpoints, the outbox of events, one delivery
-- per (event, endpoint) written in the same transaction as the change the event reports,
-- and each delivery's attempts (the delivery log). Deliveries carry a lease so that
-- several engine processes share the sending (FOR UPDATE SKIP LOCKED).

CREATE TABLE webhooks (
    seq                  bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                   text PRIMARY KEY,             -- wh_…
    tenant_id            text NOT NULL REFERENCES tenants(id),
    url                  text NOT NULL,
    events               text NOT NULL,                -- JSON array as given (["*"] = every event)
    event_filter         text NOT NULL,                -- ',a,b,' : what the outbox matches an event type against
    description          text,
    status               text NOT NULL,                -- enabled | disabled
    disabled_reason      text,
    secret_sealed        bytea NOT NULL,
    previous_secret_sealed bytea,
    previous_secret_expires_at timestamptz,
    failing_since        timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id, status);

CREATE TABLE webhook_events (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    type        text NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               text PRIMARY KEY,
    webhook_id       text NOT NULL,
    tenant_id        text NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    lease_owner      text,
    lease_until      timestamptz,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    last_duration_ms double precision,
    created_at       timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, seq);

CREATE TABLE webhook_attempts (
    delivery_id   text NOT NULL,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    status_code   integer,
    duration_ms   double precision NOT NULL,
    error         text,
    response_excerpt text,
    PRIMARY KEY (delivery_id, attempt)
);
