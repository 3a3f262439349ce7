-- Money after the access: disputes, monthly payout statements, and which ledger entries
-- each released statement paid out. The ledger itself stays immutable: release is
-- recorded beside it (payout_entries), one row per entry, so an entry is in at most one
-- statement by construction (its primary key).

-- A buyer's dispute of one charged access (at most one per access).
CREATE TABLE disputes (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,    -- dsp_…
    access_id           TEXT NOT NULL UNIQUE REFERENCES accesses(id),
    buyer_tenant_id     TEXT NOT NULL,
    provider_tenant_id  TEXT NOT NULL,
    dataset_id          TEXT NOT NULL,
    amount_micros       INTEGER NOT NULL CHECK (amount_micros > 0),   -- the access's charge
    currency            TEXT NOT NULL,
    period              TEXT NOT NULL,           -- the access's UTC month
    reason              TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('open', 'refunded', 'rejected')),
    opened_by           TEXT NOT NULL,           -- usr_… or key_… of the buyer
    created_at          TEXT NOT NULL,
    resolved_at         TEXT,
    resolved_by         TEXT
) STRICT;
CREATE INDEX disputes_status ON disputes(status, seq);
CREATE INDEX disputes_provider_open ON disputes(provider_tenant_id) WHERE status = 'open';

-- One statement per provider, UTC month and currency. The row exists from the month's
-- first charge (written in the access's transaction): it is the durable settlement
-- deadline (period_end + billing.hold_seconds). Amounts are frozen when it is released.
CREATE TABLE payouts (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,    -- pay_…
    provider_tenant_id  TEXT NOT NULL,
    period              TEXT NOT NULL,           -- 'YYYY-MM'
    currency            TEXT NOT NULL,
    period_start        TEXT NOT NULL,
    period_end          TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    released_at         TEXT,
    gross_micros        INTEGER,
    fee_micros          INTEGER,
    refunds_micros      INTEGER,
    held_micros         INTEGER,
    earnings_micros     INTEGER,
    UNIQUE (provider_tenant_id, period, currency)
) STRICT;
CREATE INDEX payouts_due ON payouts(period_end) WHERE released_at IS NULL;
CREATE INDEX payouts_provider ON payouts(provider_tenant_id, period);

-- The ledger entries a released statement paid out (each at most once).
CREATE TABLE payout_entries (
    ledger_entry_id     TEXT PRIMARY KEY REFERENCES ledger_entries(id),
    payout_id           TEXT NOT NULL REFERENCES payouts(id)
) STRICT;
CREATE INDEX payout_entries_payout ON payout_entries(payout_id);

-- Activity lists page newest first by seq within a tenant; analytics and revenue read a
-- provider's ledger by time.
CREATE INDEX searches_tenant_seq ON searches(tenant_id, seq);
CREATE INDEX accesses_buyer_seq ON accesses(buyer_tenant_id, seq);
CREATE INDEX ledger_provider_time ON ledger_entries(provider_tenant_id, created_at);
