-- A counter that moves whenever what a tenant may search can change (mirrors
-- sqlite/0032): a dataset created, deleted, or its visibility, monetization mode, status or
-- owner changed; a grant added, changed or removed. The engine caches each tenant's
-- searchable datasets under the counter's value (engine/market/discovery.py) and reads the
-- counter in the same snapshot as the datasets, so a change counts from its commit, in
-- every engine process. Writers that bump it at once serialize on its row (SERIALIZABLE
-- retries them); such writes are rare (dataset settings, grants).

CREATE TABLE discovery_version (
    id       integer PRIMARY KEY CHECK (id = 1),
    version  bigint NOT NULL
);
INSERT INTO discovery_version (id, version) VALUES (1, 0);

CREATE FUNCTION discovery_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE discovery_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER datasets_discovery_insert AFTER INSERT OR DELETE ON datasets
    FOR EACH STATEMENT EXECUTE FUNCTION discovery_version_bump();
CREATE TRIGGER datasets_discovery_update AFTER UPDATE OF visibility, monetization_mode, status, tenant_id ON datasets
    FOR EACH ROW WHEN (old.visibility IS DISTINCT FROM new.visibility OR old.monetization_mode IS DISTINCT FROM new.monetization_mode
                       OR old.status IS DISTINCT FROM new.status OR old.tenant_id IS DISTINCT FROM new.tenant_id)
    EXECUTE FUNCTION discovery_version_bump();
CREATE TRIGGER dataset_grants_discovery AFTER INSERT OR UPDATE OR DELETE ON dataset_grants
    FOR EACH STATEMENT EXECUTE FUNCTION discovery_version_bump();
