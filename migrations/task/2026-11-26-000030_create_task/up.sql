CREATE TABLE task (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    title TEXT NOT NULL,
    branch TEXT NOT NULL,
    prompt TEXT NOT NULL,
    status TEXT NOT NULL,
    sandbox_provider TEXT NOT NULL DEFAULT 'local',
    explicit_title BOOLEAN NOT NULL,
    explicit_branch BOOLEAN NOT NULL,
    pull_request TEXT,
    next_session_seq INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE task_runtime (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    active_sandbox_id TEXT,
    switch_target TEXT,
    cwd TEXT,
    updated_at BIGINT NOT NULL
);

-- The coordinator index of this task's sessions, as the sessions pushed them.
CREATE TABLE task_sessions (
    session_id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
