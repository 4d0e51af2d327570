-- The sandbox processes this task started (the host runs them; this is which are ours and their last known state).
CREATE TABLE task_processes (
    process_id TEXT PRIMARY KEY NOT NULL,
    command TEXT NOT NULL,
    -- JSON array of arguments.
    args TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL CHECK (status IN ('running', 'exited', 'missing')),
    pid BIGINT,
    exit_code INTEGER,
    created_at BIGINT NOT NULL,
    exited_at BIGINT,
    updated_at BIGINT NOT NULL
);
