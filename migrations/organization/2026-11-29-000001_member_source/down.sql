ALTER TABLE members DROP COLUMN source;
