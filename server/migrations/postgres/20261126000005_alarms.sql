-- Active alarms: at most one per kind and object, updated in place while its condition
-- lasts and deleted when it clears (the history is in events: every trigger, severity change,
-- acknowledgement and clear is an Event). Kept in a table so alarms survive a manager restart.
CREATE TABLE alarms (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_name TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    triggered_ms BIGINT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_ms BIGINT,
    UNIQUE (kind, target_id)
);
CREATE INDEX alarms_target ON alarms (target_id);
CREATE INDEX alarms_triggered ON alarms (triggered_ms);
