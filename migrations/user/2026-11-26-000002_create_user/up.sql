-- The user actor: one signed-in person and their per-user state (profile, default model, per task/session UI state).

CREATE TABLE user (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    avatar_url TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE user_profile (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    github_login TEXT,
    role TEXT NOT NULL DEFAULT 'member',
    -- JSON array of organization ids.
    eligible_org_ids TEXT NOT NULL DEFAULT '[]',
    starter_repo_status TEXT NOT NULL DEFAULT 'pending'
        CHECK (starter_repo_status IN ('pending', 'starred', 'skipped')),
    default_model TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE user_task_state (
    org_id TEXT NOT NULL,
    repo_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    active_session_id TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, repo_id, task_id)
);

CREATE TABLE user_session_state (
    org_id TEXT NOT NULL,
    repo_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    unread INTEGER NOT NULL DEFAULT 0 CHECK (unread IN (0, 1)),
    draft_text TEXT NOT NULL DEFAULT '',
    -- JSON array of draft attachments.
    draft_attachments TEXT NOT NULL DEFAULT '[]',
    draft_updated_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, repo_id, task_id, session_id)
);
