-- The app-level auth directory: resolves a session token, an email or an OAuth account to a user id before any user
-- or organization actor is known. Only hashes of tokens and OAuth states are stored, never the secrets themselves.

CREATE TABLE auth_session_index (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Sign out everywhere (by user), and pruning of expired entries (by expiry).
CREATE INDEX auth_session_index_user ON auth_session_index (user_id);
CREATE INDEX auth_session_index_expires ON auth_session_index (expires_at);

CREATE TABLE auth_email_index (
    -- Lowercased.
    email TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL
);

CREATE TABLE auth_account_index (
    provider TEXT NOT NULL,
    account_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (provider, account_id)
);

-- Pending OAuth flows, keyed by the hash of their `state` parameter; consumed once.
CREATE TABLE auth_verification (
    state_hash TEXT PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    redirect TEXT,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX auth_verification_expires ON auth_verification (expires_at);
