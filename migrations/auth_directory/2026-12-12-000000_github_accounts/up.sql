-- GitHub account (its numeric id, which survives renames) -> the one organization connected to it. Webhooks and App
-- installation events are routed through it; a second organization claiming an account is refused.
CREATE TABLE github_account_index (
    account_id BIGINT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL,
    claimed_at BIGINT NOT NULL
);
CREATE INDEX github_account_index_org ON github_account_index (org_id);
