-- The task's workspace: a checkout of its repository on its branch, where its agents work. What it is a checkout of
-- is kept here so that a restart can resume or redo provisioning on its own.
CREATE TABLE task_workspace (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    provider TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('provisioning', 'ready', 'error', 'released', 'destroyed')),
    message TEXT NOT NULL DEFAULT '',
    full_name TEXT NOT NULL,
    remote_url TEXT NOT NULL,
    base_branch TEXT NOT NULL,
    cwd TEXT,
    -- JSON: the workspace's git state (files changed, ahead/behind, last commit) when last computed.
    git_state TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
