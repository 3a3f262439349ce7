-- The review clock's queries (the earliest deadline, the datasets with something due, and
-- each dataset's due objects) all filter on review_state = 'staged' AND status = 'uploaded'.
-- The partial index on review_deadline alone did not serve them: SQLite chose
-- objects_review_queue (review_state, seq) and read every staged object, ~18 ms at 60,000
-- staged, on every confirmation. With both equalities in front of the deadline each is a
-- short range of one index.
DROP INDEX objects_review_deadline;
CREATE INDEX objects_review_due ON objects(review_state, status, review_deadline);
