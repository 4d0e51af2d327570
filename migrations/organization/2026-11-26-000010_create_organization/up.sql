CREATE TABLE organization_profile (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'organization')),
    installation_id BIGINT,
    sync_status TEXT NOT NULL DEFAULT 'pending',
    sync_phase TEXT,
    sync_synced INTEGER NOT NULL DEFAULT 0,
    sync_total INTEGER NOT NULL DEFAULT 0,
    sync_generation INTEGER NOT NULL DEFAULT 0,
    sync_error TEXT,
    last_sync_at BIGINT,
    billing_plan TEXT NOT NULL DEFAULT 'free',
    billing_status TEXT NOT NULL DEFAULT 'active',
    billing_seats INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The coordinator index of repositories, with the summary each pushes up.
CREATE TABLE repos (
    repo_id TEXT PRIMARY KEY NOT NULL,
    full_name TEXT NOT NULL UNIQUE,
    remote_url TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    task_count INTEGER NOT NULL DEFAULT 0,
    latest_activity_at BIGINT,
    created_at BIGINT NOT NULL
);

-- Task summaries of every repository, as the repositories pushed them (read by the organization snapshot in one query).
CREATE TABLE task_summaries (
    repo_id TEXT NOT NULL REFERENCES repos (repo_id),
    task_id TEXT NOT NULL,
    summary TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, task_id)
);

CREATE TABLE members (
    user_id TEXT PRIMARY KEY NOT NULL,
    login TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'invited')),
    updated_at BIGINT NOT NULL
);
