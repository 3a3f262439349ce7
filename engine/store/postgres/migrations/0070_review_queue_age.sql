-- The review console pages the queue oldest first: (uploaded_at, seq) within one review
-- state is a range of this index, so a page is a short index walk per state however long
-- the queue is (the "pending" queue reads staged and under_review as two ranges, merged).
CREATE INDEX objects_review_age ON objects(review_state, uploaded_at, seq);
