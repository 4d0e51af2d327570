DROP TABLE pending_prompts; DROP TABLE transcript; DROP TABLE session_meta;
