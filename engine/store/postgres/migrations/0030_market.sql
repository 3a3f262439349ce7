-- The marketplace's records: prices, grants, searches and their impressions, accesses and
-- the money ledger. Amounts are integer micros (millionths of the currency unit), never floats.

ALTER TABLE datasets ADD COLUMN price_micros bigint NOT NULL DEFAULT 0;
ALTER TABLE datasets ADD COLUMN currency text NOT NULL DEFAULT 'USD';

-- Who, besides the owner, may discover a `restricted` dataset and retrieve from a
-- `restricted`-monetization one. One grant per (dataset, tenant).
CREATE TABLE dataset_grants (
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id          text NOT NULL UNIQUE,            -- grt_…
    dataset_id  text NOT NULL REFERENCES datasets(id),
    tenant_id   text NOT NULL REFERENCES tenants(id),   -- the grantee
    created_by  text NOT NULL,                   -- usr_… of the owner who granted
    created_at  timestamptz NOT NULL,
    UNIQUE (dataset_id, tenant_id)
);
CREATE INDEX dataset_grants_tenant ON dataset_grants(tenant_id, dataset_id);

-- Every search (its first page; later pages add to result_count and to the impressions).
CREATE TABLE searches (
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id            text NOT NULL UNIQUE,          -- srch_…
    tenant_id     text NOT NULL,                 -- the buyer
    user_id       text,
    api_key_id    text,                          -- null for a session
    query         text NOT NULL,
    mode          text NOT NULL,                 -- hybrid | lexical | vector
    dataset_ids   text NOT NULL,                 -- JSON array as requested; [] = every dataset the caller may search
    keywords      text NOT NULL,                 -- JSON array: the query's words, folded (no operators, no patterns)
    result_count  bigint NOT NULL,              -- results returned, over every page
    created_at    timestamptz NOT NULL
);
CREATE INDEX searches_tenant ON searches(tenant_id, created_at);
CREATE INDEX searches_key ON searches(api_key_id, created_at) WHERE api_key_id IS NOT NULL;

-- Each result shown: the dataset (and its provider) shown at which rank of which search.
CREATE TABLE impressions (
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    search_id           text NOT NULL,
    rank                bigint NOT NULL,        -- 1-based, over the whole search (pages continue it)
    dataset_id          text NOT NULL,
    provider_tenant_id  text NOT NULL,           -- the dataset's owner
    buyer_tenant_id     text NOT NULL,           -- the searcher
    object_id           text NOT NULL,
    chunk_index         bigint NOT NULL,
    created_at          timestamptz NOT NULL,
    UNIQUE (search_id, rank)
);
CREATE INDEX impressions_provider ON impressions(provider_tenant_id, created_at);
CREATE INDEX impressions_dataset ON impressions(dataset_id, created_at);

-- A retrieval event: one per POST /v1/objects/{id}/access (an Idempotency-Key makes
-- retries the same one). amount/fee are what the ledger entries of the access say.
CREATE TABLE accesses (
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                  text NOT NULL UNIQUE,    -- acc_…
    buyer_tenant_id     text NOT NULL,
    user_id             text,
    api_key_id          text,
    provider_tenant_id  text NOT NULL,
    dataset_id          text NOT NULL,
    object_id           text NOT NULL,
    search_id           text,
    result_id           text,
    pricing_model       text NOT NULL,           -- the dataset's, when accessed
    monetization_mode   text NOT NULL,
    amount_micros       bigint NOT NULL CHECK (amount_micros >= 0),
    fee_micros          bigint NOT NULL CHECK (fee_micros >= 0 AND fee_micros <= amount_micros),
    currency            text NOT NULL,
    period              text NOT NULL,           -- UTC month of created_at, 'YYYY-MM'
    idempotency_principal text,                  -- with idempotency_key: a retried access finds this one
    idempotency_key     text,                    -- SHA-256 of the Idempotency-Key
    created_at          timestamptz NOT NULL
);
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
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                  text NOT NULL UNIQUE,    -- led_…
    access_id           text NOT NULL REFERENCES accesses(id),
    kind                text NOT NULL CHECK (kind IN ('charge', 'fee', 'refund', 'fee_refund')),
    amount_micros       bigint NOT NULL,        -- charge, fee ≥ 0; refund, fee_refund ≤ 0
    currency            text NOT NULL,
    buyer_tenant_id     text NOT NULL,
    provider_tenant_id  text NOT NULL,
    dataset_id          text NOT NULL,
    api_key_id          text,
    dispute_id          text,                    -- refunds: the dispute they resolve
    period              text NOT NULL,           -- UTC month of the access ('YYYY-MM'): the statement it belongs to
    created_at          timestamptz NOT NULL,
    CHECK ((kind IN ('charge', 'fee') AND amount_micros >= 0) OR (kind IN ('refund', 'fee_refund') AND amount_micros <= 0))
);
CREATE INDEX ledger_access ON ledger_entries(access_id);
CREATE INDEX ledger_buyer ON ledger_entries(buyer_tenant_id, created_at);
CREATE INDEX ledger_provider ON ledger_entries(provider_tenant_id, period);
