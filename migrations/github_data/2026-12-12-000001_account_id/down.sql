ALTER TABLE github_meta DROP COLUMN account_id;
