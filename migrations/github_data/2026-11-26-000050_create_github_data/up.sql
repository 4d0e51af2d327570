CREATE TABLE github_meta (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    account_login TEXT NOT NULL,
    account_kind TEXT NOT NULL CHECK (account_kind IN ('organization', 'user')),
    generation INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    phase TEXT,
    synced INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    started_at BIGINT,
    finished_at BIGINT,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);

-- Every row carries the sync generation that last saw it; older generations are swept when a phase completes.
CREATE TABLE repositories (
    repo_id TEXT PRIMARY KEY NOT NULL,
    github_id BIGINT NOT NULL,
    full_name TEXT NOT NULL,
    clone_url TEXT NOT NULL,
    private BOOLEAN NOT NULL,
    default_branch TEXT NOT NULL,
    generation INTEGER NOT NULL
);

CREATE TABLE branches (
    repo_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sha TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name)
) WITHOUT ROWID;

CREATE TABLE pull_requests (
    repo_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    state TEXT NOT NULL,
    summary TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (repo_id, number)
) WITHOUT ROWID;

CREATE TABLE members (
    member_id BIGINT PRIMARY KEY NOT NULL,
    login TEXT NOT NULL,
    generation INTEGER NOT NULL
);

-- Webhook deliveries already applied: GitHub redelivers, and each delivery id must take effect once.
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY NOT NULL,
    event TEXT NOT NULL,
    received_at BIGINT NOT NULL
) WITHOUT ROWID;
