-- A counter that moves whenever what a tenant may search can change: a dataset created,
-- deleted, or its visibility, monetization mode, status or owner changed; a grant added or
-- removed. The engine caches each tenant's searchable datasets under the counter's value
-- (engine/market/discovery.py) and reads the counter on every search, in the same snapshot
-- as the datasets, so a change counts from its commit, in every engine process.

CREATE TABLE discovery_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
) STRICT;
INSERT INTO discovery_version (id, version) VALUES (1, 0);

CREATE TRIGGER datasets_discovery_insert AFTER INSERT ON datasets BEGIN
    UPDATE discovery_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER datasets_discovery_delete AFTER DELETE ON datasets BEGIN
    UPDATE discovery_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER datasets_discovery_update AFTER UPDATE OF visibility, monetization_mode, status, tenant_id ON datasets
WHEN old.visibility IS NOT new.visibility OR old.monetization_mode IS NOT new.monetization_mode
  OR old.status IS NOT new.status OR old.tenant_id IS NOT new.tenant_id BEGIN
    UPDATE discovery_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER dataset_grants_discovery_insert AFTER INSERT ON dataset_grants BEGIN
    UPDATE discovery_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER dataset_grants_discovery_delete AFTER DELETE ON dataset_grants BEGIN
    UPDATE discovery_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER dataset_grants_discovery_update AFTER UPDATE ON dataset_grants BEGIN
    UPDATE discovery_version SET version = version + 1 WHERE id = 1;
END;
