-- How a member joined: 'manual' (created the organization, added by an admin) or 'github' (a member of the linked
-- GitHub organization, signed in with that GitHub account). Only 'github' members leave when GitHub says they left.
ALTER TABLE members ADD COLUMN source TEXT NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'github'));
