-- Accepted records are stored packed (engine/store/packing.py: zstd of the batch's JSON
-- lines); chunks written before keep their text in `records`, new ones leave it empty.
ALTER TABLE datapoint_chunks ADD COLUMN packed BLOB;
