ALTER TABLE pending_prompts DROP COLUMN item_seq;
ALTER TABLE session_meta DROP COLUMN suspended;
