-- Why the session takes no prompts ("archived", "killed"), or NULL. Stored so a restarted session stays suspended.
ALTER TABLE session_meta ADD COLUMN suspended TEXT;
-- The transcript item a queued prompt was recorded as: the conversation before it is what an agent that lost its
-- session is primed with (NULL for prompts queued before this column existed).
ALTER TABLE pending_prompts ADD COLUMN item_seq BIGINT;
