-- Performance samples: one row per VM per sampling interval (CPU MHz averaged over the
-- interval, resident memory). Pruned to the configured retention.
CREATE TABLE stats (
    vm_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    cpu_mhz DOUBLE PRECISION NOT NULL,
    memory_mib DOUBLE PRECISION NOT NULL
);
CREATE INDEX stats_vm_time ON stats (vm_id, time_ms);
CREATE INDEX stats_host_time ON stats (host_id, time_ms);
