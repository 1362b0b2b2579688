-- Strata manager schema v1.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_digest TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE TABLE datacenters (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE clusters (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    datacenter_id TEXT NOT NULL REFERENCES datacenters(id),
    UNIQUE (datacenter_id, name)
);

CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL UNIQUE,
    datacenter_id TEXT NOT NULL REFERENCES datacenters(id),
    cluster_id TEXT REFERENCES clusters(id),
    thumbprint TEXT NOT NULL,
    agent_username TEXT NOT NULL,
    agent_key TEXT NOT NULL,
    connection_state TEXT NOT NULL,
    state_reason TEXT,
    facts TEXT,
    added_ms BIGINT NOT NULL
);

CREATE TABLE datastores (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    host_id TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    datacenter_id TEXT NOT NULL REFERENCES datacenters(id),
    capacity_bytes BIGINT NOT NULL,
    free_bytes BIGINT NOT NULL,
    UNIQUE (host_id, name)
);

CREATE TABLE vms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    datacenter_id TEXT NOT NULL REFERENCES datacenters(id),
    host_id TEXT NOT NULL REFERENCES hosts(id),
    datastore TEXT NOT NULL,
    spec TEXT NOT NULL,
    power_state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (datacenter_id, name)
);
CREATE INDEX vms_host ON vms (host_id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    description TEXT NOT NULL,
    target_kind TEXT,
    target_id TEXT,
    target_name TEXT,
    state TEXT NOT NULL,
    progress INTEGER NOT NULL,
    step TEXT,
    error TEXT,
    result TEXT,
    username TEXT NOT NULL,
    queued_ms BIGINT NOT NULL,
    completed_ms BIGINT
);
CREATE INDEX tasks_queued ON tasks (queued_ms);
CREATE INDEX tasks_state ON tasks (state);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    object_kind TEXT,
    object_id TEXT,
    object_name TEXT,
    username TEXT,
    message TEXT NOT NULL
);
CREATE INDEX events_object ON events (object_id, id);
CREATE INDEX events_time ON events (time_ms);
