-- The user's sign-in sessions (the token itself is never stored, only its SHA-256 hex) and linked OAuth accounts.

CREATE TABLE auth_sessions (
    session_id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    user_agent TEXT
);

-- Listing newest first, and pruning long-expired sessions.
CREATE INDEX auth_sessions_created ON auth_sessions (created_at);
CREATE INDEX auth_sessions_expires ON auth_sessions (expires_at);

CREATE TABLE accounts (
    provider TEXT NOT NULL,
    account_id TEXT NOT NULL,
    login TEXT NOT NULL,
    access_token TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (provider, account_id)
);
