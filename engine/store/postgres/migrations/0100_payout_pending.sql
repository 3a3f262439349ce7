-- A statement turns pending when its month ends: the settlement clock writes pending_at
-- then, with the payout.pending event in the same transaction, once (only while it is
-- NULL). Statements released before this column existed count as pending since their
-- month's end (nothing is announced for them); unreleased ones whose month already ended
-- are announced on the clock's first pass.
ALTER TABLE payouts ADD COLUMN pending_at timestamptz;
UPDATE payouts SET pending_at = period_end WHERE released_at IS NOT NULL;
CREATE INDEX payouts_pending_due ON payouts(period_end) WHERE pending_at IS NULL;
