-- The organization's audit log: append-only, newest first by id.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    repo_id TEXT,
    task_id TEXT,
    session_id TEXT,
    user_id TEXT,
    payload TEXT NOT NULL DEFAULT '{}',
    at INTEGER NOT NULL
);

-- Listing by repository, and by repository + task (task ids are per repository), newest first.
CREATE INDEX events_repo_id ON events (repo_id, id);
CREATE INDEX events_repo_task_id ON events (repo_id, task_id, id);
