CREATE TABLE session_meta (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    mode TEXT NOT NULL,
    thought_level TEXT NOT NULL,
    status TEXT NOT NULL,
    agent_session_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Complete transcript items in order (streamed deltas are folded into items before they are stored).
CREATE TABLE transcript (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    user_id TEXT,
    at BIGINT NOT NULL
);

-- Text the agent has streamed in the running turn, not yet a complete transcript item.
ALTER TABLE session_meta ADD COLUMN partial_text TEXT NOT NULL DEFAULT '';

-- Prompts waiting for the session's agent, oldest first. A prompt is queued in the same transaction that records it,
-- so it is never dropped; a turn takes the oldest when it starts.
CREATE TABLE pending_prompts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    user_id TEXT,
    at BIGINT NOT NULL
);
