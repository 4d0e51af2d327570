ALTER TABLE session_meta DROP COLUMN agent_state;
