-- The marketplace's records: prices, grants, searches and their impressions, accesses and
-- the money ledger. Amounts are integer micros (millionths of the currency unit), never floats.

ALTER TABLE datasets ADD COLUMN price_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE datasets ADD COLUMN currency TEXT NOT NULL DEFAULT 'USD';

-- Who, besides the owner, may discover a `restricted` dataset and retrieve from a
-- `restricted`-monetization one. One grant per (dataset, tenant).
CREATE TABLE dataset_grants (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,            -- grt_…
    dataset_id  TEXT NOT NULL REFERENCES datasets(id),
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),   -- the grantee
    created_by  TEXT NOT NULL,                   -- usr_… of the owner who granted
    created_at  TEXT NOT NULL,
    UNIQUE (dataset_id, tenant_id)
) STRICT;
CREATE INDEX dataset_grants_tenant ON dataset_grants(tenant_id, dataset_id);

-- Every search (its first page; later pages add to result_count and to the impressions).
CREATE TABLE searches (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,          -- srch_…
    tenant_id     TEXT NOT NULL,                 -- the buyer
    user_id       TEXT,
    api_key_id    TEXT,                          -- null for a session
    query         TEXT NOT NULL,
    mode          TEXT NOT NULL,                 -- hybrid | lexical | vector
    dataset_ids   TEXT NOT NULL,                 -- JSON array as requested; [] = every dataset the caller may search
    keywords      TEXT NOT NULL,                 -- JSON array: the query's words, folded (no operators, no patterns)
    result_count  INTEGER NOT NULL,              -- results returned, over every page
    created_at    TEXT NOT NULL
) STRICT;
CREATE INDEX searches_tenant ON searches(tenant_id, created_at);
CREATE INDEX searches_key ON searches(api_key_id, created_at) WHERE api_key_id IS NOT NULL;

-- Each result shown: the dataset (and its provider) shown at which rank of which search.
CREATE TABLE impressions (
    seq                 INTEGER PRIMARY KEY,
    search_id           TEXT NOT NULL,
    rank                INTEGER NOT NULL,        -- 1-based, over the whole search (pages continue it)
    dataset_id          TEXT NOT NULL,
    provider_tenant_id  TEXT NOT NULL,           -- the dataset's owner
    buyer_tenant_id     TEXT NOT NULL,           -- the searcher
    object_id           TEXT NOT NULL,
    chunk_index         INTEGER NOT NULL,
    created_at          TEXT NOT NULL,
    UNIQUE (search_id, rank)
) STRICT;
CREATE INDEX impressions_provider ON impressions(provider_tenant_id, created_at);
CREATE INDEX impressions_dataset ON impressions(dataset_id, created_at);

-- A retrieval event: one per POST /v1/objects/{id}/access (an Idempotency-Key makes
-- retries the same one). amount/fee are what the ledger entries of the access say.
CREATE TABLE accesses (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,    -- acc_…
    buyer_tenant_id     TEXT NOT NULL,
    user_id             TEXT,
    api_key_id          TEXT,
    provider_tenant_id  TEXT NOT NULL,
    dataset_id          TEXT NOT NULL,
    object_id           TEXT NOT NULL,
    search_id           TEXT,
    result_id           TEXT,
    pricing_model       TEXT NOT NULL,           -- the dataset's, when accessed
    monetization_mode   TEXT NOT NULL,
    amount_micros       INTEGER NOT NULL CHECK (amount_micros >= 0),
    fee_micros          INTEGER NOT NULL CHECK (fee_micros >= 0 AND fee_micros <= amount_micros),
    currency            TEXT NOT NULL,
    period              TEXT NOT NULL,           -- UTC month of created_at, 'YYYY-MM'
    idempotency_principal TEXT,                  -- with idempotency_key: a retried access finds this one
    idempotency_key     TEXT,                    -- SHA-256 of the Idempotency-Key
    created_at          TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX accesses_idempotency ON accesses(idempotency_principal, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX accesses_buyer ON accesses(buyer_tenant_id, created_at);
CREATE INDEX accesses_dataset ON accesses(dataset_id, created_at);
CREATE INDEX accesses_provider ON accesses(provider_tenant_id, created_at);
CREATE INDEX accesses_flat_rate ON accesses(dataset_id, buyer_tenant_id, period);

-- The money ledger: immutable entries, integer micros, signed. An access charged N with
-- fee F writes (charge, +N) and (fee, +F) in the access's transaction; a refund writes
-- negative entries (refund, -R) and (fee_refund, -F·R/N rounded down). Never updated,
-- never deleted. Buyer spend = Σ charge + Σ refund; provider gross = the same per provider;
-- provider earnings = gross − (Σ fee + Σ fee_refund).
CREATE TABLE ledger_entries (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,    -- led_…
    access_id           TEXT NOT NULL REFERENCES accesses(id),
    kind                TEXT NOT NULL CHECK (kind IN ('charge', 'fee', 'refund', 'fee_refund')),
    amount_micros       INTEGER NOT NULL,        -- charge, fee ≥ 0; refund, fee_refund ≤ 0
    currency            TEXT NOT NULL,
    buyer_tenant_id     TEXT NOT NULL,
    provider_tenant_id  TEXT NOT NULL,
    dataset_id          TEXT NOT NULL,
    api_key_id          TEXT,
    dispute_id          TEXT,                    -- refunds: the dispute they resolve
    period              TEXT NOT NULL,           -- UTC month of the access ('YYYY-MM'): the statement it belongs to
    created_at          TEXT NOT NULL,
    CHECK ((kind IN ('charge', 'fee') AND amount_micros >= 0) OR (kind IN ('refund', 'fee_refund') AND amount_micros <= 0))
) STRICT;
CREATE INDEX ledger_access ON ledger_entries(access_id);
CREATE INDEX ledger_buyer ON ledger_entries(buyer_tenant_id, created_at);
CREATE INDEX ledger_provider ON ledger_entries(provider_tenant_id, period);
