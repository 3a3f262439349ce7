-- GET /v1/datasets/{id}/objects?checksum_sha256=…: "is this file already in the dataset?"
-- (`ipto upload` asks it for every file before uploading). Only verified objects carry a
-- checksum, so the index holds only those.
CREATE INDEX objects_checksum ON objects(dataset_id, checksum_sha256) WHERE checksum_sha256 IS NOT NULL;
