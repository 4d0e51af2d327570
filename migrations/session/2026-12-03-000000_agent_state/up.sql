-- What the agent backend saved to continue this conversation (its ids and event cursor), written in the same
-- transaction as the events it follows.
ALTER TABLE session_meta ADD COLUMN agent_state TEXT;
