-- Resource pools (issue 6): a tree per standalone host or cluster; VMs may sit in a pool.
CREATE TABLE pools (
    id TEXT PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    owner_id TEXT NOT NULL,
    parent_id TEXT REFERENCES pools(id),
    allocation TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX pools_sibling_name ON pools (owner_id, (COALESCE(parent_id, '')), name);
CREATE INDEX pools_parent ON pools (parent_id);

ALTER TABLE vms ADD COLUMN pool_id TEXT REFERENCES pools(id);
