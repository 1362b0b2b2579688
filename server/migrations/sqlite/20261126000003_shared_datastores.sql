-- A datastore is one object however many hosts mount it: rows are keyed by the volume id
-- (from the datastore's .strata-datastore file) and the host that reports it, and each host's
-- row says whether that host can reach it now. Hosts report their datastores again when they
-- connect, so the old rows can go.
DROP TABLE datastores;
CREATE TABLE datastores (
    id TEXT NOT NULL,
    host_id TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    datacenter_id TEXT NOT NULL REFERENCES datacenters(id),
    capacity_bytes BIGINT NOT NULL,
    free_bytes BIGINT NOT NULL,
    problem TEXT,
    PRIMARY KEY (id, host_id)
);
