CREATE TABLE repo_meta (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    full_name TEXT NOT NULL,
    remote_url TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    next_task_seq INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The coordinator index of this repository's tasks and their pushed summaries. Branches are unique and immutable.
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY NOT NULL,
    branch TEXT NOT NULL UNIQUE,
    summary TEXT NOT NULL,
    -- 0 for tasks created lazily from a pull request: no task actor (and no database) until first used.
    materialized BOOLEAN NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
