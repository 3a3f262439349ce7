-- The delivery worker's claim reads each enabled endpoint's first due deliveries.
CREATE INDEX webhook_deliveries_pending_by_webhook ON webhook_deliveries(webhook_id, next_attempt_at, seq) WHERE status = 'pending';
