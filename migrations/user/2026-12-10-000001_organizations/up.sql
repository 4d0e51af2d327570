-- What each organization told this user about itself (display name) and about them (role), by organization id.
-- The list and order of organizations stays `user_profile.eligible_org_ids`; a row here only adds details.
CREATE TABLE user_org_details (
    org_id TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The organization the user last chose (their app opens there); NULL: the first of their organizations.
ALTER TABLE user_profile ADD COLUMN active_org_id TEXT;
