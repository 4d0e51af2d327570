-- The connected GitHub account's numeric id: webhooks are matched by it, and it survives renames. NULL for a
-- connection recorded before ids were (its webhooks find no organization until an admin connects it again).
ALTER TABLE github_meta ADD COLUMN account_id BIGINT;
