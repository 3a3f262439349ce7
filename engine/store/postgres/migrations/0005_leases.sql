-- Leases: which engine process holds what (a dataset's actor, a pipeline job's run, a
-- dataset's import runner, the review clock). Times come from the database's clock, so
-- processes on different hosts agree on expiry. A process renews its leases with one
-- heartbeat UPDATE; a lease not renewed within its ttl may be taken over.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    owner       text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX leases_owner ON leases(owner);
